use super::*;

#[test]
fn theil_sen_ignores_outliers() {
    let times: Vec<f64> = (0..20).map(f64::from).collect();
    let mut values: Vec<f64> = times.iter().map(|t| 100.0 + 3.0 * t).collect();
    values[5] = 1e9;
    values[12] = -1e9;
    let slope = theil_sen(&times, &values).unwrap();
    assert!((slope - 3.0).abs() < 1e-9, "{slope}");
    assert_eq!(theil_sen(&[1.0], &[1.0]), None);
    assert_eq!(
        theil_sen(&[1.0, 1.0], &[1.0, 5.0]),
        None,
        "no distinct times"
    );
}

#[test]
fn median_of_even_and_odd() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&mut []), None);
}

#[test]
fn mann_kendall_detects_trends_and_their_absence() {
    let up: Vec<f64> = (0..30)
        .map(|i| f64::from(i) + if i % 2 == 0 { 3.0 } else { -3.0 })
        .collect();
    let mk = mann_kendall(&up);
    assert!(mk.p_increasing < 1e-4 && mk.p_decreasing > 0.99, "{mk:?}");
    let down: Vec<f64> = up.iter().rev().copied().collect();
    let mk = mann_kendall(&down);
    assert!(mk.p_decreasing < 1e-4, "{mk:?}");
    let flat = vec![5.0; 30];
    let mk = mann_kendall(&flat);
    assert_eq!((mk.s, mk.z), (0.0, 0.0));
    assert!(mk.p_increasing >= 0.5);
    let saw: Vec<f64> = (0..60).map(|i| f64::from(i % 6)).collect();
    let mk = mann_kendall(&saw);
    assert!(mk.p_increasing > 0.05, "a sawtooth has no trend: {mk:?}");
}

#[test]
fn mann_kendall_matches_a_hand_computed_case() {
    // Values 1, 3, 2, 4: S = (+1 +1 +1) + (-1 +1) + (+1) = 4; Var = 4*3*13/18 = 8.667;
    // Z = (4 - 1) / sqrt(8.667) = 1.019.
    let mk = mann_kendall(&[1.0, 3.0, 2.0, 4.0]);
    assert_eq!(mk.s, 4.0);
    assert!((mk.z - 1.019).abs() < 1e-3, "{mk:?}");
    assert!((mk.p_increasing - 0.154).abs() < 1e-3, "{mk:?}");
}

#[test]
fn normal_tail_is_accurate() {
    assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
    assert!((upper_tail(1.959_964) - 0.025).abs() < 1e-6);
    assert!((upper_tail(-1.644_854) - 0.95).abs() < 1e-6);
    assert!((upper_tail(3.090_232) - 0.001).abs() < 1e-7);
}

#[test]
fn buckets_average_runs() {
    let times: Vec<f64> = (0..10).map(f64::from).collect();
    let (t, v) = bucket(&times, &times, 4);
    assert_eq!(t, vec![1.0, 4.0, 7.0, 9.0]);
    assert_eq!(v, t);
    let (t, _) = bucket(&times, &times, 20);
    assert_eq!(t.len(), 10);
}

#[test]
fn selection_agrees_with_a_sort_with_and_without_nans() {
    // A deterministic scramble of values with ties, infinities and signed zeros.
    let base: Vec<f64> = (0..101)
        .map(|i| match i % 7 {
            0 => f64::INFINITY,
            1 => -0.0,
            2 => 0.0,
            3 => f64::NEG_INFINITY,
            _ => ((i * 37) % 23) as f64 - 11.0,
        })
        .collect();
    let mut sorted = base.clone();
    sorted.sort_by(f64::total_cmp);
    for k in [0, 1, 50, 99, 100] {
        let mut xs = base.clone();
        select(&mut xs, k);
        // Equal as numbers (the plain comparison does not order -0 before +0).
        assert_eq!(xs[k], sorted[k], "k = {k}");
        assert!(xs[..k].iter().all(|&x| x <= xs[k]) && xs[k + 1..].iter().all(|&x| x >= xs[k]));
    }
    // With NaNs the order is `total_cmp`'s (positive NaN last), and nothing panics.
    let mut with_nan = base.clone();
    with_nan[3] = f64::NAN;
    with_nan[60] = f64::NAN;
    let mut sorted = with_nan.clone();
    sorted.sort_by(f64::total_cmp);
    let mut xs = with_nan.clone();
    select(&mut xs, 100);
    assert!(xs[100].is_nan());
    let mut xs = with_nan;
    select(&mut xs, 50);
    assert_eq!(xs[50], sorted[50]);
    assert_eq!(median(&mut [3.0, f64::NAN, 1.0]), Some(3.0));
}
