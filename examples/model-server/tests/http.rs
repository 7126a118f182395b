//! Every endpoint of the real binary over loopback HTTP: answers, refusals (with their
//! JSON errors), the bearer token beyond loopback, and `serve`'s bad flags.
//!
//! `promtool check metrics` and `go tool pprof` check the metrics and the heap profile
//! when they are installed; without them those parts print `SKIPPED: ... not found` and
//! pass, unless the environment variable `CI` is set.

mod common;

use common::{Response, Server, metric, run_binary, run_tool};
use leakwatch_testsupport::temp_dir;
use model_server::server::GenerateResponse;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A loopback server whose recorder takes a snapshot every 0.1 s.
fn server() -> Server {
    Server::loopback(&["--interval", "0.1"])
}

fn generate(server: &Server, body: &str) -> Response {
    server.post_json("/v1/generate", body)
}

/// Checks a refusal: `status`, a JSON body with a non-empty `error` and the same
/// `status`.
#[track_caller]
fn assert_json_error(response: &Response, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {response:?}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: not JSON: {response:?}"
    );
    let body = response.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error message: {response:?}"
    );
    assert_eq!(body["status"], status, "{what}: {response:?}");
}

/// Waits (at most 10 s) until the recorder has taken `points` snapshots.
fn wait_for_points(server: &Server, points: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = server.get("/debug/leaks?format=json").json();
        if report["points"].as_u64().is_some_and(|p| p >= points) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the recorder did not take {points} snapshots in 10 s: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn generate_continues_the_prompt_and_the_session_keeps_its_context() {
    let server = server();
    let body = r#"{"session_id": "alice", "prompt": "the baker sold bread", "max_tokens": 4}"#;
    let first = generate(&server, body);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        first
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{first:?}"
    );
    let json = first.json();
    let mut fields: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "context_tokens",
            "model_version",
            "session_id",
            "text",
            "tokens"
        ],
        "{json}"
    );
    let first: GenerateResponse = serde_json::from_value(json).expect("a GenerateResponse");
    assert_eq!(first.session_id, "alice");
    assert_eq!(first.model_version, 1);
    assert_eq!(first.tokens, 4);
    assert!(!first.text.trim().is_empty(), "{first:?}");
    // Four prompt words and four generated ones.
    assert_eq!(first.context_tokens, 8, "{first:?}");

    // The same session again: its context grows by the new prompt and words.
    let again: GenerateResponse = serde_json::from_value(generate(&server, body).json()).unwrap();
    assert_eq!(again.session_id, "alice");
    assert_eq!(again.context_tokens, 16, "{again:?}");

    // Another session starts from scratch; without max_tokens, 16 words.
    let bob = generate(
        &server,
        r#"{"session_id": "bob", "prompt": "the baker sold bread"}"#,
    );
    assert_eq!(bob.status, 200, "{bob:?}");
    let bob: GenerateResponse = serde_json::from_value(bob.json()).unwrap();
    assert_eq!((bob.tokens, bob.context_tokens), (16, 20), "{bob:?}");

    let metrics = server.get("/metrics").text();
    assert_eq!(
        metric(&metrics, "model_server_generate_requests_total"),
        Some(3.0)
    );
    assert_eq!(
        metric(&metrics, "model_server_generated_tokens_total"),
        Some(24.0)
    );
    assert_eq!(metric(&metrics, "model_server_sessions"), Some(2.0));
}

#[test]
fn generate_refuses_bad_requests_with_a_json_error() {
    let server = server();
    let json = Some("application/json");
    let long_id = "x".repeat(129);
    let long_prompt = "word ".repeat(1000); // 5,000 bytes, over the 4,096-byte limit
    let huge_prompt = "word ".repeat(14_000); // 70,000 bytes, over the 64 KiB body limit
    // What, Content-Type, body, status.
    let cases: Vec<(&str, Option<&str>, String, u16)> = vec![
        (
            "malformed JSON",
            json,
            r#"{"session_id": "a", "#.into(),
            400,
        ),
        ("not an object", json, "[1, 2]".into(), 400),
        ("empty body", json, String::new(), 400),
        (
            "wrong type",
            json,
            r#"{"session_id": "a", "prompt": "hi", "max_tokens": "four"}"#.into(),
            400,
        ),
        ("missing field", json, r#"{"session_id": "a"}"#.into(), 400),
        (
            "unknown field",
            json,
            r#"{"session_id": "a", "prompt": "hi", "temperature": 0.5}"#.into(),
            400,
        ),
        (
            "negative max_tokens",
            json,
            r#"{"session_id": "a", "prompt": "hi", "max_tokens": -1}"#.into(),
            400,
        ),
        (
            "no content type",
            None,
            r#"{"session_id": "a", "prompt": "hi"}"#.into(),
            415,
        ),
        (
            "text content type",
            Some("text/plain"),
            r#"{"session_id": "a", "prompt": "hi"}"#.into(),
            415,
        ),
        (
            "empty session id",
            json,
            r#"{"session_id": "", "prompt": "hi"}"#.into(),
            400,
        ),
        (
            "session id with a space",
            json,
            r#"{"session_id": "a b", "prompt": "hi"}"#.into(),
            400,
        ),
        (
            "session id with a slash",
            json,
            r#"{"session_id": "../a", "prompt": "hi"}"#.into(),
            400,
        ),
        (
            "non-ASCII session id",
            json,
            r#"{"session_id": "café", "prompt": "hi"}"#.into(),
            400,
        ),
        (
            "129-byte session id",
            json,
            format!(r#"{{"session_id": "{long_id}", "prompt": "hi"}}"#),
            400,
        ),
        (
            "oversized prompt",
            json,
            format!(r#"{{"session_id": "a", "prompt": "{long_prompt}"}}"#),
            413,
        ),
        (
            "oversized body",
            json,
            format!(r#"{{"session_id": "a", "prompt": "{huge_prompt}"}}"#),
            413,
        ),
        (
            "max_tokens 0",
            json,
            r#"{"session_id": "a", "prompt": "hi", "max_tokens": 0}"#.into(),
            400,
        ),
        (
            "max_tokens over the limit",
            json,
            r#"{"session_id": "a", "prompt": "hi", "max_tokens": 65}"#.into(),
            400,
        ),
    ];
    for (what, content_type, body, status) in &cases {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| vec![("Content-Type", t)])
            .unwrap_or_default();
        let response = server.request("POST", "/v1/generate", &headers, body.as_bytes());
        assert_json_error(&response, *status, what);
    }
    // At the limits, accepted.
    let at_limits = [
        (
            "128-byte session id",
            format!(r#"{{"session_id": "{}", "prompt": "hi"}}"#, "x".repeat(128)),
        ),
        (
            "4,096-byte prompt",
            format!(
                r#"{{"session_id": "a", "prompt": "{}"}}"#,
                "word ".repeat(819) + "w"
            ),
        ),
        (
            "max_tokens 64",
            r#"{"session_id": "a-b_c.d:e", "prompt": "hi", "max_tokens": 64}"#.into(),
        ),
    ];
    for (what, body) in &at_limits {
        let response = generate(&server, body);
        assert_eq!(response.status, 200, "{what}: {response:?}");
    }
    let metrics = server.get("/metrics").text();
    assert_eq!(
        metric(&metrics, "model_server_client_errors_total"),
        Some(cases.len() as f64),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "model_server_generate_requests_total"),
        Some(at_limits.len() as f64),
        "{metrics}"
    );
}

#[test]
fn admin_model_swaps_to_the_next_or_the_given_version() {
    let server = server();
    let version_of_answers = |server: &Server| {
        let response = generate(server, r#"{"session_id": "s", "prompt": "hi"}"#);
        assert_eq!(response.status, 200, "{response:?}");
        response.json()["model_version"].clone()
    };
    assert_eq!(version_of_answers(&server), 1);

    let next = server.post_json("/admin/model", "");
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(
        next.json(),
        serde_json::json!({"previous": 1, "version": 2})
    );
    assert_eq!(version_of_answers(&server), 2);

    let seven = server.post_json("/admin/model", r#"{"version": 7}"#);
    assert_eq!(seven.status, 200, "{seven:?}");
    assert_eq!(
        seven.json(),
        serde_json::json!({"previous": 2, "version": 7})
    );
    assert_eq!(version_of_answers(&server), 7);

    for (what, body) in [
        ("malformed JSON", r#"{"version": "#),
        ("a string version", r#"{"version": "8"}"#),
        ("a negative version", r#"{"version": -1}"#),
        ("an unknown field", r#"{"versoin": 8}"#),
        ("not an object", "8"),
    ] {
        let response = server.post_json("/admin/model", body);
        assert_json_error(&response, 400, what);
    }
    // Refused updates changed nothing; a blank body is the next version.
    assert_eq!(version_of_answers(&server), 7);
    let blank = server.post_json("/admin/model", " \n");
    assert_eq!(
        blank.json(),
        serde_json::json!({"previous": 7, "version": 8})
    );

    let metrics = server.get("/metrics").text();
    assert_eq!(metric(&metrics, "model_server_model_version"), Some(8.0));
    assert_eq!(
        metric(&metrics, "model_server_model_swaps_total"),
        Some(3.0)
    );
}

#[test]
fn healthz_answers_ok() {
    let server = server();
    let response = server.get("/healthz");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "ok\n");
}

#[test]
fn unknown_paths_get_a_json_404() {
    let server = server();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/v1/nope"),
        ("POST", "/v2/generate"),
        ("GET", "/debug/pprof/profile"),
    ] {
        let response = server.request(method, path, &[], b"");
        assert_json_error(&response, 404, &format!("{method} {path}"));
    }
}

#[test]
fn metrics_are_prometheus_text_that_promtool_accepts() {
    let server = server();
    let response = generate(&server, r#"{"session_id": "m", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    wait_for_points(&server, 2);
    let response = server.get("/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    let text = response.text();
    for name in [
        "model_server_generate_requests_total",
        "model_server_client_errors_total",
        "model_server_unauthorized_requests_total",
        "model_server_generated_tokens_total",
        "model_server_generate_seconds_total",
        "model_server_model_swaps_total",
        "model_server_model_version",
        "model_server_sessions",
        "model_server_session_cache_bytes",
        "model_server_uptime_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")) && text.contains(&format!("# TYPE {name} ")),
            "{name} is not announced:\n{text}"
        );
        assert!(metric(&text, name).is_some(), "no sample {name}:\n{text}");
    }
    assert_eq!(
        metric(&text, "model_server_generate_requests_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "model_server_session_cache_bytes"),
        Some((128 * 32 * 2 * 4) as f64)
    );
    assert!(
        text.lines().any(|l| l.starts_with("leakwatch_")),
        "no leakwatch metrics:\n{text}"
    );
    let Some((status, complaints)) = run_tool(
        Command::new("promtool").args(["check", "metrics"]),
        Some(text.as_bytes()),
        "promtool",
        "apt-get install prometheus",
    ) else {
        return;
    };
    assert!(
        status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {status}\n{complaints}\n--- metrics:\n{text}"
    );
}

#[test]
fn debug_leaks_in_text_json_and_html() {
    let server = server();
    let response = generate(&server, r#"{"session_id": "d", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    wait_for_points(&server, 3);

    let json = server.get("/debug/leaks?format=json");
    assert_eq!(json.status, 200, "{json:?}");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let report = json.json();
    assert_eq!(report["format"], "leakwatch-report", "{report:#}");
    assert_eq!(report["version"], 2, "{report:#}");
    assert_eq!(report["mode"], "sampled", "{report:#}");
    assert!(report["sites"].is_array(), "{report:#}");
    assert!(report["process"]["live_bytes"].is_u64(), "{report:#}");

    let top = server.get("/debug/leaks?format=json&top=1").json();
    assert!(
        top["sites"].as_array().is_some_and(|s| s.len() <= 1),
        "{top:#}"
    );

    for path in ["/debug/leaks", "/debug/leaks?format=text"] {
        let text = server.get(path);
        assert_eq!(text.status, 200, "{path}: {text:?}");
        assert!(
            text.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{path}: {text:?}"
        );
        assert!(
            text.text().starts_with("leakwatch report"),
            "{path}: {text:?}"
        );
    }

    let html = server.get("/debug/leaks?format=html");
    assert_eq!(html.status, 200, "{html:?}");
    assert!(
        html.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{html:?}"
    );
    let page = html.text();
    assert!(
        page.to_ascii_lowercase().starts_with("<!doctype html>"),
        "{html:?}"
    );
    for part in ["<html", "<head>", "<title>", "<body", "</body>"] {
        assert!(page.contains(part), "no {part} in the page: {html:?}");
    }
    assert!(page.trim_end().ends_with("</html>"), "{html:?}");

    for query in ["format=pdf", "format=", "top=many"] {
        let response = server.get(&format!("/debug/leaks?{query}"));
        assert_json_error(&response, 400, query);
    }
}

#[test]
fn pprof_heap_is_a_gzipped_profile_that_go_tool_pprof_reads() {
    let server = server();
    let response = generate(&server, r#"{"session_id": "p", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    wait_for_points(&server, 2);
    let response = server.get("/debug/pprof/heap");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.starts_with(&[0x1f, 0x8b]),
        "not gzip: {:02x?}",
        &response.body[..response.body.len().min(16)]
    );
    let allocs = server.get("/debug/pprof/allocs");
    assert_eq!(allocs.status, 200, "{allocs:?}");
    assert!(allocs.body.starts_with(&[0x1f, 0x8b]), "allocs: not gzip");
    let dir = temp_dir("pprof");
    let file = dir.join("heap.pb.gz");
    std::fs::write(&file, &response.body).expect("write the profile");
    let allocs_file = dir.join("allocs.pb.gz");
    std::fs::write(&allocs_file, &allocs.body).expect("write the allocs profile");
    let Some((status, output)) = common::pprof_top(&file, dir.path()) else {
        return;
    };
    assert!(status.success(), "go tool pprof -top: {status}\n{output}");
    assert!(
        output.contains("Type: inuse_space") && output.contains("flat%"),
        "go tool pprof -top:\n{output}"
    );
    // The allocs profile's default is the bytes allocated, as Go's.
    let Some((status, output)) = common::pprof_top(&allocs_file, dir.path()) else {
        return;
    };
    assert!(
        status.success(),
        "go tool pprof -top allocs: {status}\n{output}"
    );
    assert!(
        output.contains("Type: alloc_space") && output.contains("flat%"),
        "go tool pprof -top allocs:\n{output}"
    );
}

#[test]
fn debug_endpoints_answer_503_when_leakwatch_is_off() {
    let server = Server::loopback(&["--leakwatch", "off"]);
    for path in [
        "/debug/leaks",
        "/debug/leaks?format=json",
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
    ] {
        assert_json_error(&server.get(path), 503, path);
    }
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
}

/// A report's `mode` and `sample_rate`.
type Tracked = (String, u64);
/// `serve`'s flags, its environment, and the tracking it should report.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], Option<Tracked>);

/// The `mode` and `sample_rate` of the report of a server started with `args` and
/// `envs`, once its recorder has a point; `None` when `/debug/leaks` answers 503
/// (leakwatch off).
fn tracking_of(args: &[&str], envs: &[(&str, &str)]) -> Option<Tracked> {
    let mut all = vec!["--interval", "0.1"];
    all.extend_from_slice(args);
    let server = Server::start("127.0.0.1:0", &all, envs);
    let response = server.get("/debug/leaks?format=json");
    if response.status == 503 {
        return None;
    }
    assert_eq!(response.status, 200, "{args:?} {envs:?}: {response:?}");
    wait_for_points(&server, 1);
    let report = server.get("/debug/leaks?format=json").json();
    Some((
        report["mode"].as_str().unwrap_or_default().to_string(),
        report["sample_rate"].as_u64().unwrap_or_default(),
    ))
}

#[test]
fn serve_honours_the_leakwatch_environment_unless_a_flag_says_otherwise() {
    let sampled = |rate: u64| Some(("sampled".to_string(), rate));
    let exact = Some(("exact".to_string(), 1));
    let default_rate = u64::from(leakwatch::DEFAULT_SAMPLE_RATE);
    let cases: Vec<Case> = vec![
        (&[], &[], sampled(default_rate)),
        (&[], &[("LEAKWATCH", "exact")], exact.clone()),
        (&[], &[("LEAKWATCH", "off")], None),
        (&[], &[("LEAKWATCH", "0")], None),
        (&[], &[("LEAKWATCH_SAMPLE", "64k")], sampled(65536)),
        (
            &[],
            &[("LEAKWATCH", "1"), ("LEAKWATCH_SAMPLE", "1")],
            exact.clone(),
        ),
        (&[], &[("LEAKWATCH_SAMPLE", "1")], exact.clone()),
        // An explicit flag wins over the environment.
        (
            &["--leakwatch", "sampled"],
            &[("LEAKWATCH", "exact")],
            sampled(default_rate),
        ),
        (
            &["--leakwatch", "exact"],
            &[("LEAKWATCH", "off")],
            exact.clone(),
        ),
        (&["--leakwatch", "off"], &[("LEAKWATCH", "exact")], None),
    ];
    for (args, envs, expected) in cases {
        assert_eq!(
            tracking_of(args, envs),
            expected,
            "serve {args:?} with {envs:?}"
        );
    }
    // A value the README does not document is refused, in one line, before serving.
    let (status, stdout, stderr) = common::run_binary_with(
        &["serve", "--addr", "127.0.0.1:0"],
        &[("LEAKWATCH", "always")],
    );
    assert_eq!(status.code(), Some(2), "{status}\n{stdout}\n{stderr}");
    assert!(
        stderr.starts_with("model-server: LEAKWATCH: ") && stderr.lines().count() == 1,
        "{stderr:?}"
    );
}

/// The server bound to all interfaces (reached through 127.0.0.1): not loopback to it.
fn beyond_loopback(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let server = Server::start("0.0.0.0:0", args, envs);
    assert!(server.bound().ip().is_unspecified(), "{}", server.bound());
    server
}

/// `/admin` and `/debug` with the token `s3cret` beyond loopback, the open endpoints
/// without any.
fn check_token_s3cret(server: &Server) {
    let refused_with = |token: Option<&str>, method: &str, path: &str| {
        let header = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Authorization", h)])
            .unwrap_or_default();
        let response = server.request(method, path, &headers, b"");
        let what = format!("{method} {path} with token {token:?}");
        assert_json_error(&response, 401, &what);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{what}: {response:?}"
        );
    };
    let mut refusals = 0.0;
    for (method, path) in [
        ("GET", "/debug/leaks"),
        ("GET", "/debug/leaks?format=json"),
        ("GET", "/debug/pprof/heap"),
        ("GET", "/debug/pprof/allocs"),
        ("POST", "/admin/model"),
    ] {
        for token in [
            None,
            Some("wrong"),
            Some("s3cre"),
            Some("s3cret2"),
            Some(""),
        ] {
            refused_with(token, method, path);
            refusals += 1.0;
        }
    }
    let basic = server.request(
        "GET",
        "/debug/leaks",
        &[("Authorization", "Basic czNjcmV0")],
        b"",
    );
    assert_json_error(&basic, 401, "Basic authorization");
    refusals += 1.0;

    let right = [
        ("Authorization", "Bearer s3cret"),
        ("Content-Type", "application/json"),
    ];
    for (method, path) in [
        ("GET", "/debug/leaks"),
        ("GET", "/debug/leaks?format=json"),
        ("GET", "/debug/pprof/heap"),
        ("GET", "/debug/pprof/allocs"),
        ("POST", "/admin/model"),
    ] {
        let response = server.request(method, path, &right, b"");
        assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    }
    assert_eq!(
        server
            .request("GET", "/debug/leaks?format=json", &right, b"")
            .json()["format"],
        "leakwatch-report"
    );

    // The service's own endpoints need no token.
    let response = generate(server, r#"{"session_id": "t", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["model_version"], 2, "{response:?}");
    assert_eq!(server.get("/healthz").status, 200);
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metric(&metrics.text(), "model_server_unauthorized_requests_total"),
        Some(refusals)
    );
}

#[test]
fn beyond_loopback_admin_and_debug_need_the_token_from_its_file() {
    let dir = temp_dir("token");
    let file = dir.join("token");
    // A trailing newline, as `echo s3cret > file` writes, is not part of the token.
    std::fs::write(&file, "s3cret\n").expect("write the token file");
    let file = file.to_str().expect("a UTF-8 temp path");
    let server = beyond_loopback(&["--token-file", file, "--interval", "0.1"], &[]);
    check_token_s3cret(&server);
}

#[test]
fn the_debug_token_can_come_from_the_environment() {
    let server = beyond_loopback(
        &["--interval", "0.1"],
        &[("MODEL_SERVER_DEBUG_TOKEN", "s3cret")],
    );
    check_token_s3cret(&server);
}

#[test]
fn beyond_loopback_without_a_token_admin_and_debug_refuse_everyone() {
    let server = beyond_loopback(&["--interval", "0.1"], &[]);
    for (method, path) in [
        ("GET", "/debug/leaks"),
        ("GET", "/debug/pprof/heap"),
        ("GET", "/debug/pprof/allocs"),
        ("POST", "/admin/model"),
    ] {
        for header in [None, Some("Bearer s3cret"), Some("Bearer ")] {
            let headers: Vec<(&str, &str)> = header
                .map(|h| vec![("Authorization", h)])
                .unwrap_or_default();
            let response = server.request(method, path, &headers, b"");
            assert_json_error(&response, 401, &format!("{method} {path} with {header:?}"));
        }
    }
    assert_eq!(server.get("/healthz").status, 200);
    let response = generate(&server, r#"{"session_id": "t", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json()["model_version"],
        1,
        "no update went through"
    );
    // It says so when it starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("without a token") {
        assert!(
            Instant::now() < deadline,
            "no warning about the missing token on stderr:\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_with_bad_flags_exits_2_with_one_line() {
    // An address in use: bound here, for the time of the test.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken = taken.local_addr().expect("its address").to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["serve", "--bogus"],
        vec!["serve", "--addr"],
        vec!["serve", "--addr", "localhost"],
        vec!["serve", "--addr", "127.0.0.1:99999"],
        vec!["serve", "--addr", &taken],
        vec!["serve", "--leakwatch", "always"],
        vec!["serve", "--budget", "lots"],
        vec!["serve", "--budget", "0"],
        vec!["serve", "--context", "4"],
        vec!["serve", "--context", "many"],
        vec!["serve", "--interval", "0"],
        vec!["serve", "--interval", "NaN"],
        vec!["serve", "--memory-limit", "-1"],
        vec!["serve", "--debug-token", ""],
        vec!["serve", "--debug-token", "s3cret"],
        vec!["serve", "--token-file"],
        vec!["serve", "--token-file", "/nonexistent/model-server-token"],
        vec!["serve", "--token-file", "/dev/null"],
        vec!["serve", "--token-file", "/dev/zero"],
        vec!["serve", "--header-timeout", "0"],
        vec!["serve", "--idle-timeout", "forever"],
        vec!["serve", "--request-timeout", "-1"],
        vec!["serve", "--shutdown-timeout", "1e9"],
        vec!["serve", "--leaky", "extra"],
    ];
    for args in &cases {
        let (status, stdout, stderr) = run_binary(args);
        assert_eq!(
            status.code(),
            Some(2),
            "model-server {args:?}: {status}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert_eq!(stdout, "", "model-server {args:?} wrote to stdout");
        assert_eq!(
            stderr.lines().count(),
            1,
            "model-server {args:?} should say what is wrong in one line:\n{stderr}"
        );
        assert!(
            stderr.starts_with("model-server: ") && stderr.ends_with('\n'),
            "model-server {args:?}: {stderr:?}"
        );
    }
    // Which address could not be bound, and why, in one line.
    let (_, _, stderr) = run_binary(&["serve", "--addr", &taken]);
    assert_eq!(
        stderr,
        format!("model-server: cannot bind {taken}: Address already in use\n")
    );
    // A token in the arguments is refused, and the message says what to use instead.
    let (_, _, stderr) = run_binary(&["serve", "--debug-token", "s3cret"]);
    assert!(
        stderr.contains("--token-file") && stderr.contains("MODEL_SERVER_DEBUG_TOKEN"),
        "{stderr}"
    );
    let (status, stdout, _) = run_binary(&["help"]);
    assert!(status.success() && stdout.contains("usage:"), "{stdout}");
}

#[test]
fn a_token_given_twice_is_refused_in_one_line() {
    let dir = temp_dir("two-tokens");
    let file = dir.join("token");
    std::fs::write(&file, "s3cret").expect("write the token file");
    let file = file.to_str().expect("a UTF-8 temporary path");
    let (status, stdout, stderr) = common::run_binary_with(
        &["serve", "--addr", "127.0.0.1:0", "--token-file", file],
        &[("MODEL_SERVER_DEBUG_TOKEN", "other")],
    );
    assert_eq!(status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("give one"), "{stderr}");
}

/// A raw connection to `server`, for requests the blocking client cannot send (partial
/// ones, held open).
fn raw(server: &Server) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(5))
        .expect("connect to the server");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("set a write timeout");
    stream
}

/// Reads from `stream` until the server closes it, for at most `limit`: how long that
/// took and what came before, or `None` when it is still open at `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset: closed, too.
            Err(_) => return Some((start.elapsed(), got)),
        }
    }
}

#[test]
fn sigterm_exits_within_the_deadline_while_slow_clients_hold_partial_requests() {
    // Default timeouts (10 s for a head, 5 s of shutdown): the clients below would hold
    // their requests for a minute.
    let mut server = server();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = raw(&server);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .expect("send half a head");
        held.push(stream);
    }
    for _ in 0..4 {
        // A whole head and part of a body: a request in flight, its handler waiting.
        let mut stream = raw(&server);
        stream
            .write_all(
                b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"session_id\": ",
            )
            .expect("send a head and part of a body");
        held.push(stream);
    }
    // An idle keep-alive connection after a complete exchange.
    let mut idle = raw(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send a request");
    let mut first = [0u8; 17];
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    idle.read_exact(&mut first).expect("read the answer");
    assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");
    held.push(idle);
    // Let every connection reach the server before the signal.
    std::thread::sleep(Duration::from_millis(300));
    let exited = server.terminate(Duration::from_secs(15));
    let Some((took, status)) = exited else {
        panic!(
            "still running 15 s after SIGTERM, with 9 clients holding their connections:\n{}",
            server.stderr_text()
        );
    };
    assert!(status.success(), "{status}: {}", server.stderr_text());
    // The deadline is 5 s; the margin is for a loaded machine.
    assert!(
        took >= Duration::from_secs(4),
        "did not wait for requests in flight: {took:?}"
    );
    assert!(
        server.stderr_text().contains("shutdown deadline"),
        "{}",
        server.stderr_text()
    );
    drop(held);
}

#[test]
fn sigterm_with_only_idle_and_half_sent_heads_exits_at_once() {
    let mut server = server();
    let mut half = raw(&server);
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .expect("send half a head");
    let idle = raw(&server);
    std::thread::sleep(Duration::from_millis(300));
    let (took, status) = server
        .terminate(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM"));
    assert!(status.success(), "{status}");
    // Nothing was in flight: no need to wait for the 5 s deadline.
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop((half, idle));
}

#[test]
fn a_client_that_stalls_mid_head_is_disconnected_after_the_header_timeout() {
    let server = Server::loopback(&["--header-timeout", "0.5", "--idle-timeout", "4"]);
    let mut stalled = raw(&server);
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        .expect("send half a head");
    let closed = closed_within(&mut stalled, Duration::from_secs(10));
    let Some((took, answer)) = closed else {
        panic!("a half-sent head held its connection for 10 s (header timeout 0.5 s)")
    };
    assert!(
        took < Duration::from_secs(4),
        "closed after {took:?}, by the idle timeout rather than the header one"
    );
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

    // A connection that sends nothing is idle, not slow: the header timeout does not
    // apply; after it, a whole request is answered.
    let mut quiet = raw(&server);
    assert!(
        closed_within(&mut quiet, Duration::from_millis(1500)).is_none(),
        "an idle connection was closed by the header timeout"
    );
    quiet
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send a request");
    let mut answer = [0u8; 17];
    quiet
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    quiet.read_exact(&mut answer).expect("read the answer");
    assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n");
    // Then, idle on keep-alive, it is closed by the idle timeout (4 s).
    let closed = closed_within(&mut quiet, Duration::from_secs(15));
    assert!(
        closed
            .as_ref()
            .is_some_and(|(took, _)| *took >= Duration::from_secs(2)),
        "an idle keep-alive connection: {closed:?}"
    );
}

#[test]
fn a_body_that_never_comes_is_answered_408_after_the_request_timeout() {
    let server = Server::loopback(&["--request-timeout", "0.5"]);
    let mut slow = raw(&server);
    slow.write_all(
        b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .expect("send a head and a byte of body");
    let closed = closed_within(&mut slow, Duration::from_secs(10));
    let Some((_, answer)) = closed else {
        panic!("a stalled body held its request for 10 s (request timeout 0.5 s)")
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains(r#""status":408"#), "{answer}");
}

#[test]
fn oversized_heads_are_refused_with_431() {
    let server = server();
    let long = "a".repeat(64 * 1024);
    let response = server.request("GET", "/healthz", &[("X-Long", &long)], b"");
    assert_eq!(response.status, 431, "{response:?}");
    // Many small headers: hyper's limit of 100.
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let response = server.request("GET", "/healthz", &many, b"");
    assert_eq!(response.status, 431, "{response:?}");
    assert_eq!(server.get("/healthz").status, 200);
}

/// Sends `method path` to `server` with exactly `headers` (a `Host` among them or not),
/// over a raw connection.
fn exact_request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = raw(server);
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .expect("send the request");
    let (_, raw_answer) =
        closed_within(&mut stream, Duration::from_secs(10)).expect("an answer within 10 s");
    common::parse_response(&raw_answer)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&raw_answer)))
}

#[test]
fn admin_and_debug_refuse_what_a_web_page_could_send() {
    let server = server();
    let port = server.addr().port();
    let own = format!("127.0.0.1:{port}");
    let json = ("Content-Type", "application/json");
    let version = |server: &Server| server.metric("model_server_model_version");
    // What a page can send without a preflight: a form or text/plain POST, or none.
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let mut headers = vec![("Host", own.as_str())];
        headers.extend(content_type.map(|t| ("Content-Type", t)));
        let response = exact_request(
            &server,
            "POST",
            "/admin/model",
            &headers,
            br#"{"version": 9}"#,
        );
        assert_json_error(&response, 415, &format!("Content-Type {content_type:?}"));
    }
    // DNS rebinding: the page's own name in Host; or the right name and another port.
    let rebound = format!("attacker.example:{port}");
    let other_port = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    for host in [
        rebound.as_str(),
        other_port.as_str(),
        "127.0.0.1",
        "localhost",
        "127.0.0.2:1",
    ] {
        for (method, path) in [
            ("POST", "/admin/model"),
            ("GET", "/debug/leaks"),
            ("GET", "/debug/pprof/heap"),
        ] {
            let response = exact_request(&server, method, path, &[("Host", host), json], b"");
            assert_json_error(&response, 403, &format!("{method} {path} with Host {host}"));
        }
    }
    let response = exact_request(&server, "GET", "/debug/leaks", &[], b"");
    assert_json_error(&response, 403, "no Host");
    // Another origin, or a browser saying the request is cross-site.
    let evil = ("Origin", "http://attacker.example");
    let null = ("Origin", "null");
    let https = format!("https://{own}");
    let https = ("Origin", https.as_str());
    let cross = ("Sec-Fetch-Site", "cross-site");
    let same_site = ("Sec-Fetch-Site", "same-site");
    for extra in [evil, null, https, cross, same_site] {
        let response = exact_request(
            &server,
            "POST",
            "/admin/model",
            &[("Host", &own), json, extra],
            b"",
        );
        assert_json_error(&response, 403, &format!("POST /admin/model with {extra:?}"));
        let response = exact_request(
            &server,
            "GET",
            "/debug/leaks",
            &[("Host", &own), extra],
            b"",
        );
        assert_json_error(&response, 403, &format!("GET /debug/leaks with {extra:?}"));
    }
    assert_eq!(version(&server), 1.0, "a refused request changed the model");
    // The service's own endpoints are anyone's.
    let response = exact_request(&server, "GET", "/healthz", &[("Host", &rebound), evil], b"");
    assert_eq!(response.status, 200, "{response:?}");

    // The server's own names, its own origin, and curl (no Origin) pass.
    let localhost = format!("localhost:{port}");
    let v6 = format!("[::1]:{port}");
    let mixed_case = format!("LocalHost:{port}");
    let own_origin = format!("http://{own}");
    let mut expected = 1.0;
    for headers in [
        vec![("Host", own.as_str()), json],
        vec![("Host", localhost.as_str()), json],
        vec![("Host", mixed_case.as_str()), json],
        vec![("Host", v6.as_str()), json],
        vec![
            ("Host", own.as_str()),
            json,
            ("Origin", own_origin.as_str()),
        ],
        vec![
            ("Host", own.as_str()),
            json,
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![
            ("Host", own.as_str()),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
    ] {
        let response = exact_request(&server, "POST", "/admin/model", &headers, b"");
        expected += 1.0;
        assert_eq!(response.status, 200, "{headers:?}: {response:?}");
        let response = exact_request(&server, "GET", "/debug/leaks?format=json", &headers, b"");
        assert_eq!(response.status, 200, "{headers:?}: {response:?}");
    }
    assert_eq!(version(&server), expected);
}

#[test]
fn wrong_methods_get_a_json_405_with_allow() {
    let server = server();
    for (method, path, allow) in [
        ("GET", "/admin/model", "POST"),
        ("PUT", "/v1/generate", "POST"),
        ("GET", "/v1/generate", "POST"),
        ("POST", "/healthz", "GET,HEAD"),
        ("DELETE", "/metrics", "GET,HEAD"),
        ("OPTIONS", "/admin/model", "POST"),
    ] {
        let response = server.request(method, path, &[], b"");
        assert_json_error(&response, 405, &format!("{method} {path}"));
        let allowed = response
            .header("allow")
            .unwrap_or_default()
            .replace(' ', "");
        assert_eq!(allowed, allow, "{method} {path}: {response:?}");
    }
}

#[test]
fn the_model_version_never_wraps() {
    let server = server();
    let last = server.post_json("/admin/model", r#"{"version": 4294967295}"#);
    assert_eq!(
        last.json(),
        serde_json::json!({"previous": 1, "version": 4294967295u32})
    );
    let next = server.post_json("/admin/model", "");
    assert_json_error(&next, 409, "the next version after the last");
    assert_json_error(
        &server.post_json("/admin/model", r#"{"version": 0}"#),
        400,
        "version 0",
    );
    assert_json_error(
        &server.post_json("/admin/model", r#"{"version": 4294967296}"#),
        400,
        "version 2^32",
    );
    assert_eq!(server.metric("model_server_model_version"), 4294967295.0);
    let response = generate(&server, r#"{"session_id": "s", "prompt": "hi"}"#);
    assert_eq!(
        response.json()["model_version"],
        4294967295u32,
        "{response:?}"
    );
    // An explicit version still works from there.
    let back = server.post_json("/admin/model", r#"{"version": 3}"#);
    assert_eq!(
        back.json(),
        serde_json::json!({"previous": 4294967295u32, "version": 3})
    );
}

/// With `LEAKWATCH_SYMBOLIZE=0` the service symbolizes nothing: its report labels sites
/// by module and offset (with the warning) and its heap profile names no function.
/// (`go tool pprof BINARY` naming them is tests/tests/render_pprof.rs's: on this debug
/// binary, with a profile sampled this finely, Go's DWARF reader did not finish within
/// the 60 s `run_tool` allows, 4 runs of 4 on the shared 2-core machine; at the default
/// rate a run may sample no site of the service's own code.)
#[test]
fn symbolization_off_leaves_the_report_and_profile_without_names() {
    let server = Server::start(
        "127.0.0.1:0",
        &["--interval", "0.1"],
        // Sampled finely enough that start-up and a request always give sites.
        &[("LEAKWATCH_SYMBOLIZE", "0"), ("LEAKWATCH_SAMPLE", "16k")],
    );
    let response = generate(&server, r#"{"session_id": "p", "prompt": "hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    wait_for_points(&server, 2);
    let report = server.get("/debug/leaks?format=json").json();
    let labels: Vec<&str> = report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert!(!labels.is_empty(), "{report:#}");
    assert!(
        labels
            .iter()
            .all(|l| l.starts_with("model-server+0x") || !l.contains("model_server")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("model-server+0x")),
        "{labels:?}"
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("symbols are offline"), "{warnings}");

    let response = server.get("/debug/pprof/heap");
    assert_eq!(response.status, 200, "{response:?}");
    let dir = temp_dir("pprof-offline");
    let file = dir.join("heap.pb.gz");
    std::fs::write(&file, &response.body).expect("write the profile");
    let none = std::ffi::OsStr::new("-symbolize=none");
    let Some((status, bare)) = common::pprof_top_with(&[none], &file, dir.path()) else {
        return;
    };
    assert!(status.success(), "go tool pprof -top: {status}\n{bare}");
    assert!(!bare.contains("model_server::"), "{bare}");
    let rows: Vec<&str> = bare
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(!rows.is_empty(), "{bare}");
    // Only modules: pprof shows `[model-server]` for addresses without functions.
    assert!(rows.iter().all(|name| name.starts_with('[')), "{bare}");
}
