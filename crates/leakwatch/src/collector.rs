//! leakwatch's metric families in a `prometheus-client` registry (the
//! `prometheus-client` feature): [`PrometheusCollector`].

use crate::recorder::Shared;
use leakwatch_report::render::prometheus::{Family, MetricKind, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::Weak;

/// The families [`Recorder::prometheus`](crate::Recorder::prometheus) writes, encoded by
/// a `prometheus-client` [`Registry`](prometheus_client::registry::Registry): the
/// service's own `/metrics` carries them beside its metrics, one exposition, one scrape.
///
/// At every scrape (every encoding of the registry) the collector ranks the recorder's
/// history as [`Recorder::prometheus`](crate::Recorder::prometheus) does and encodes the
/// same names, help texts, labels and values ([`families`](crate::report::render::prometheus::families)):
/// dashboards and rules written for one work with the other. Ranking takes a few
/// milliseconds for thousands of sites; an async service encodes the registry off its
/// runtime (`spawn_blocking`). Once the recorder is dropped, the collector encodes
/// nothing.
///
/// Register it at the registry's root: a sub-registry's prefix or labels would change
/// the names and labels. The registry's own encoders name counters: leakwatch's
/// `leakwatch_allocations_total` is registered as `leakwatch_allocations` and comes out
/// as `leakwatch_allocations_total`, in the Prometheus text format
/// (`prometheus_client::encoding::prometheus_text`) as in OpenMetrics (which also
/// announces it as `leakwatch_allocations` and ends with `# EOF`).
///
/// # Examples
/// ```
/// use prometheus_client::metrics::counter::Counter;
/// use prometheus_client::registry::Registry;
///
/// let recorder = leakwatch::Recorder::builder().manual().start().expect("a recorder");
/// let requests: Counter = Counter::default();
/// let mut registry = Registry::default();
/// registry.register("service_requests", "Requests served", requests.clone());
/// registry.register_collector(Box::new(recorder.prometheus_collector(20)));
///
/// requests.inc();
/// recorder.record();
/// let mut text = String::new();
/// prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("\nservice_requests_total 1\n"));
/// assert!(text.contains("\n# TYPE leakwatch_heap_live_bytes gauge\n"));
/// assert!(text.contains("\n# TYPE leakwatch_allocations_total counter\n"));
/// ```
#[derive(Clone)]
pub struct PrometheusCollector {
    shared: Weak<Shared>,
    top: usize,
}

impl PrometheusCollector {
    pub(crate) fn new(shared: Weak<Shared>, top: usize) -> PrometheusCollector {
        PrometheusCollector { shared, top }
    }
}

impl std::fmt::Debug for PrometheusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusCollector")
            .field("top", &self.top)
            .field("recorder_alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl Collector for PrometheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        for family in shared.metric_families(self.top) {
            encode_family(&mut encoder, &family)?;
        }
        Ok(())
    }
}

/// One family: its descriptor, then each sample with its labels.
fn encode_family(encoder: &mut DescriptorEncoder, family: &Family) -> Result<(), std::fmt::Error> {
    let (name, metric_type) = match family.kind {
        // The encoders append `_total` to a counter's name.
        MetricKind::Counter => (
            family.name.strip_suffix("_total").unwrap_or(family.name),
            MetricType::Counter,
        ),
        _ => (family.name, MetricType::Gauge),
    };
    let mut metric = encoder.encode_descriptor(name, family.help, None, metric_type)?;
    for sample in &family.samples {
        if sample.labels.is_empty() {
            encode_value(&mut metric, family.kind, sample.value)?;
        } else {
            let mut labelled = metric.encode_family(&sample.labels)?;
            encode_value(&mut labelled, family.kind, sample.value)?;
        }
    }
    Ok(())
}

/// A sample's value as a counter's or a gauge's, integers kept exact.
fn encode_value(
    metric: &mut MetricEncoder,
    kind: MetricKind,
    value: Value,
) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        (MetricKind::Counter, Value::Unsigned(v)) => {
            metric.encode_counter::<NoLabelSet, _, u64>(&v, None)
        }
        (MetricKind::Counter, Value::Signed(v)) => {
            metric.encode_counter::<NoLabelSet, _, u64>(&u64::try_from(v).unwrap_or(0), None)
        }
        (MetricKind::Counter, Value::Float(v)) => {
            metric.encode_counter::<NoLabelSet, _, f64>(&v, None)
        }
        (_, Value::Unsigned(v)) => metric.encode_gauge(&v),
        (_, Value::Signed(v)) => metric.encode_gauge(&v),
        (_, Value::Float(v)) => metric.encode_gauge(&v),
    }
}
