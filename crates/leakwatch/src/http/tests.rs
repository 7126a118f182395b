use super::*;
use axum::body::Body;
use leakwatch_alloc::{SiteStats, Snapshot};
use std::time::Duration;
use tower::ServiceExt;

const PORT: u16 = 8080;
const LOOPBACK: &str = "127.0.0.1:50000";
const REMOTE: &str = "192.0.2.7:50000";
const OWN_HOST: &str = "127.0.0.1:8080";

/// A recorder (no thread, no symbolization) with three snapshots of one growing site.
fn recorder() -> Arc<Recorder> {
    let recorder = Recorder::builder()
        .manual()
        .symbolize(false)
        .start()
        .expect("recorder");
    for point in 1..=3u64 {
        let mut site = SiteStats::default();
        site.id = 1;
        site.frames = vec![0x1234, 0x5678];
        site.live_bytes = point << 20;
        site.live_blocks = point as f64;
        site.alloc_bytes = point << 21;
        site.alloc_blocks = 2.0 * point as f64;
        let mut snapshot = Snapshot::default();
        snapshot.timestamp_ms = 1_700_000_000_000 + point * 1000;
        snapshot.sites = vec![site];
        recorder.push(&snapshot);
    }
    Arc::new(recorder)
}

/// The router with a recorder, `guard` in front.
fn app(guard: Guard) -> Router {
    router(recorder(), guard)
}

fn guard() -> Guard {
    Guard::new()
        .token(Token::new("s3cret"))
        .listening_on(SocketAddr::from(([127, 0, 0, 1], PORT)))
}

/// `GET path` from `peer` (`None`: no `ConnectInfo`) with `headers`.
fn request(path: &str, peer: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let mut request = Request::builder().method("GET").uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).expect("a request");
    if let Some(peer) = peer {
        let peer: SocketAddr = peer.parse().expect("a socket address");
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    request
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, request: Request) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .expect("the body")
        .to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `path` from a remote peer, with `Host: host` and `Authorization: authorization`.
async fn remote_with(app: &Router, path: &str, host: &str, authorization: &str) -> Answer {
    let headers = [("Host", host), ("Authorization", authorization)];
    send(app, request(path, Some(REMOTE), &headers)).await
}

/// A refusal or bad request: `status`, one line of text.
#[track_caller]
fn assert_one_line(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{what}: {answer:?}"
    );
    let text = answer.text();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1 && text.trim().len() > 10,
        "{what}: not one line: {text:?}"
    );
}

const ENDPOINTS: [&str; 5] = [
    "/debug/leaks",
    "/debug/leaks?format=json",
    "/debug/leaks?format=html",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
];

#[tokio::test]
async fn each_format_has_its_content_type() {
    let app = app(guard());
    let own = [("Host", OWN_HOST)];
    for path in ["/debug/leaks", "/debug/leaks?format=text"] {
        let text = send(&app, request(path, Some(LOOPBACK), &own)).await;
        assert_eq!(text.status, StatusCode::OK, "{path}: {text:?}");
        assert_eq!(
            text.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(text.text().starts_with("leakwatch report"), "{text:?}");
    }

    let json = send(
        &app,
        request("/debug/leaks?format=json", Some(LOOPBACK), &own),
    )
    .await;
    assert_eq!(json.status, StatusCode::OK, "{json:?}");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let report: serde_json::Value = serde_json::from_slice(&json.body).expect("JSON");
    assert_eq!(report["format"], "leakwatch-report", "{report:#}");
    assert_eq!(report["points"], 3, "{report:#}");
    assert_eq!(report["sites"].as_array().map(Vec::len), Some(1));

    let html = send(
        &app,
        request("/debug/leaks?format=html", Some(LOOPBACK), &own),
    )
    .await;
    assert_eq!(html.status, StatusCode::OK, "{html:?}");
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = html.text();
    assert!(
        page.to_ascii_lowercase().starts_with("<!doctype html>"),
        "{page}"
    );
    assert!(page.trim_end().ends_with("</html>"));

    for (path, file) in [
        ("/debug/pprof/heap", "heap.pb.gz"),
        ("/debug/pprof/allocs", "allocs.pb.gz"),
    ] {
        let profile = send(&app, request(path, Some(LOOPBACK), &own)).await;
        assert_eq!(profile.status, StatusCode::OK, "{path}: {profile:?}");
        assert_eq!(
            profile.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(
            profile.header("content-disposition"),
            Some(format!("attachment; filename=\"{file}\"").as_str())
        );
        assert!(profile.body.starts_with(&[0x1f, 0x8b]), "{path}: not gzip");
    }
    // Each profile is what the renderer makes of the recorder's latest snapshot.
    let recorder = recorder();
    let (snapshot, symbols) = recorder.latest();
    let heap = send(&app, request("/debug/pprof/heap", Some(LOOPBACK), &own)).await;
    assert_eq!(
        heap.body,
        crate::report::render::pprof::pprof(&snapshot, &symbols)
    );
    let allocs = send(&app, request("/debug/pprof/allocs", Some(LOOPBACK), &own)).await;
    assert_eq!(
        allocs.body,
        crate::report::render::pprof::pprof_allocs(&snapshot, &symbols)
    );
    assert_ne!(allocs.body, heap.body);
}

#[tokio::test]
async fn top_bounds_the_json_report() {
    let recorder = Recorder::builder()
        .manual()
        .symbolize(false)
        .start()
        .expect("recorder");
    let mut snapshot = Snapshot::default();
    snapshot.timestamp_ms = 1_700_000_000_000;
    snapshot.sites = (1..=5u32)
        .map(|id| {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = vec![0x1000 * u64::from(id)];
            site.live_bytes = u64::from(id) << 10;
            site.live_blocks = 1.0;
            site
        })
        .collect();
    recorder.push(&snapshot);
    let app: Router = router(Arc::new(recorder), guard());
    let own = [("Host", OWN_HOST)];
    let lines = |answer: &Answer| {
        let report: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
        report["sites"].as_array().map_or(0, Vec::len)
    };
    let all = send(
        &app,
        request("/debug/leaks?format=json", Some(LOOPBACK), &own),
    )
    .await;
    assert_eq!(lines(&all), 5, "{}", all.text());
    let one = send(
        &app,
        request("/debug/leaks?format=json&top=1", Some(LOOPBACK), &own),
    )
    .await;
    assert_eq!(lines(&one), 1, "{}", one.text());
    // Out of range is clamped, not refused.
    let zero = send(
        &app,
        request("/debug/leaks?format=json&top=0", Some(LOOPBACK), &own),
    )
    .await;
    assert_eq!(lines(&zero), 1, "{}", zero.text());
}

#[tokio::test]
async fn bad_queries_are_400_with_one_line() {
    let app = app(guard());
    for query in [
        "format=pdf",
        "format=",
        "format=JSON",
        "format=text%0Aevil",
        "top=many",
        "top=-1",
    ] {
        let answer = send(
            &app,
            request(
                &format!("/debug/leaks?{query}"),
                Some(LOOPBACK),
                &[("Host", OWN_HOST)],
            ),
        )
        .await;
        assert_one_line(&answer, StatusCode::BAD_REQUEST, query);
    }
    let answer = send(
        &app,
        request(
            "/debug/leaks?format=pdf",
            Some(LOOPBACK),
            &[("Host", OWN_HOST)],
        ),
    )
    .await;
    assert_eq!(
        answer.text(),
        "unknown format \"pdf\": text, json or html\n"
    );
}

#[tokio::test]
async fn loopback_peers_need_no_token() {
    let app = app(guard());
    for (peer, host) in [
        (LOOPBACK, OWN_HOST),
        (LOOPBACK, "localhost:8080"),
        (LOOPBACK, "LocalHost:8080"),
        ("127.3.4.5:1", "127.3.4.5:8080"),
        ("[::1]:50000", "[::1]:8080"),
        // A dual-stack socket sees IPv4 loopback peers as mapped addresses.
        ("[::ffff:127.0.0.1]:50000", OWN_HOST),
    ] {
        for path in ENDPOINTS {
            let answer = send(&app, request(path, Some(peer), &[("Host", host)])).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} from {peer} as {host}: {answer:?}"
            );
        }
    }
    // Without `listening_on`, any port will do; the name must still be loopback's.
    let anywhere = app_without_token();
    let answer = send(
        &anywhere,
        request("/debug/leaks", Some(LOOPBACK), &[("Host", "localhost:3")]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let answer = send(
        &anywhere,
        request(
            "/debug/leaks",
            Some(LOOPBACK),
            &[("Host", "attacker.example:3")],
        ),
    )
    .await;
    assert_one_line(&answer, StatusCode::FORBIDDEN, "another name, any port");
}

#[tokio::test]
async fn other_peers_need_the_token() {
    let app = app(guard());
    let host = [("Host", "debug.example:8080")];
    for path in ENDPOINTS {
        let answer = send(&app, request(path, Some(REMOTE), &host)).await;
        assert_one_line(&answer, StatusCode::UNAUTHORIZED, path);
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{path}");
        for authorization in [
            "Bearer wrong",
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "Bearer  s3cret",
            "Bearer ",
            "Bearer",
            "Basic czNjcmV0",
            "s3cret",
        ] {
            let answer = remote_with(&app, path, host[0].1, authorization).await;
            let what = format!("{path} with {authorization:?}");
            assert_one_line(&answer, StatusCode::UNAUTHORIZED, &what);
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
        }
        for authorization in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
            let answer = remote_with(&app, path, host[0].1, authorization).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} with {authorization:?}: {answer:?}"
            );
        }
    }
    // A wrong token and a missing one read alike.
    let none = send(&app, request("/debug/leaks", Some(REMOTE), &host)).await;
    let wrong = remote_with(&app, "/debug/leaks", host[0].1, "Bearer nope").await;
    assert_eq!(none.text(), wrong.text());
}

#[tokio::test]
async fn without_a_token_only_loopback_gets_in() {
    let app = app(Guard::new());
    let answer = remote_with(&app, "/debug/leaks", "debug.example", "Bearer ").await;
    assert_one_line(&answer, StatusCode::UNAUTHORIZED, "no token configured");
    assert!(answer.text().contains("loopback"), "{answer:?}");
}

#[tokio::test]
async fn an_unknown_peer_needs_the_token() {
    let app = app(guard());
    let answer = send(&app, request("/debug/leaks", None, &[("Host", OWN_HOST)])).await;
    assert_one_line(&answer, StatusCode::UNAUTHORIZED, "no ConnectInfo");
    let answer = send(
        &app,
        request(
            "/debug/leaks",
            None,
            &[("Host", OWN_HOST), ("Authorization", "Bearer s3cret")],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // Without a token configured, it says what is missing.
    let answer = send(
        &app_without_token(),
        request("/debug/leaks", None, &[("Host", OWN_HOST)]),
    )
    .await;
    assert_one_line(
        &answer,
        StatusCode::UNAUTHORIZED,
        "no ConnectInfo, no token",
    );
    assert!(
        answer
            .text()
            .contains("into_make_service_with_connect_info"),
        "{answer:?}"
    );
}

fn app_without_token() -> Router {
    app(Guard::new())
}

#[tokio::test]
async fn loopback_can_be_made_to_need_the_token() {
    let app = app(guard().trust_loopback(false));
    let own = [("Host", OWN_HOST)];
    let answer = send(&app, request("/debug/leaks", Some(LOOPBACK), &own)).await;
    assert_one_line(&answer, StatusCode::UNAUTHORIZED, "loopback not trusted");
    let answer = send(
        &app,
        request(
            "/debug/leaks",
            Some(LOOPBACK),
            &[own[0], ("Authorization", "Bearer s3cret")],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn other_sites_pages_are_refused_even_with_the_token() {
    let app = app(guard());
    let token = ("Authorization", "Bearer s3cret");
    let https = format!("https://{OWN_HOST}");
    for extra in [
        ("Origin", "http://attacker.example"),
        ("Origin", "null"),
        ("Origin", https.as_str()),
        ("Origin", "http://127.0.0.1:8081"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        for path in ENDPOINTS {
            for (peer, headers) in [
                (LOOPBACK, vec![("Host", OWN_HOST), extra]),
                (REMOTE, vec![("Host", OWN_HOST), extra, token]),
            ] {
                let answer = send(&app, request(path, Some(peer), &headers)).await;
                let what = format!("{path} from {peer} with {extra:?}");
                assert_one_line(&answer, StatusCode::FORBIDDEN, &what);
                assert_eq!(answer.header("www-authenticate"), None, "{what}");
            }
        }
    }
    // Its own origin, and a browser saying so, pass.
    let own_origin = format!("http://{OWN_HOST}");
    for extra in [
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Site", "none"),
    ] {
        let answer = send(
            &app,
            request("/debug/leaks", Some(LOOPBACK), &[("Host", OWN_HOST), extra]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{extra:?}: {answer:?}");
    }
}

#[tokio::test]
async fn a_loopback_peer_must_name_loopback_in_host() {
    let app = app(guard());
    for host in [
        "attacker.example:8080",
        "127.0.0.1:8081",
        "127.0.0.1",
        "localhost",
        "localhost:http",
        "192.0.2.1:8080",
        "[::2]:8080",
        "localhost.attacker.example:8080",
    ] {
        let answer = send(
            &app,
            request("/debug/leaks", Some(LOOPBACK), &[("Host", host)]),
        )
        .await;
        assert_one_line(&answer, StatusCode::FORBIDDEN, host);
    }
    let answer = send(&app, request("/debug/leaks", Some(LOOPBACK), &[])).await;
    assert_one_line(&answer, StatusCode::FORBIDDEN, "no Host");
    // HTTP/2 puts the host in the URI instead.
    let answer = send(
        &app,
        request("http://127.0.0.1:8080/debug/leaks", Some(LOOPBACK), &[]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // With the token, the name does not matter (a page cannot send the token).
    let answer = send(
        &app,
        request(
            "/debug/leaks",
            Some(LOOPBACK),
            &[
                ("Host", "debug.example:443"),
                ("Authorization", "Bearer s3cret"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn without_a_recorder_every_endpoint_is_503() {
    let app: Router = router(None, guard());
    for path in ENDPOINTS {
        let answer = send(&app, request(path, Some(LOOPBACK), &[("Host", OWN_HOST)])).await;
        assert_one_line(&answer, StatusCode::SERVICE_UNAVAILABLE, path);
    }
    // The guard still comes first.
    let answer = send(&app, request("/debug/leaks", Some(REMOTE), &[])).await;
    assert_one_line(&answer, StatusCode::UNAUTHORIZED, "remote, no recorder");
}

#[tokio::test]
async fn errors_can_be_rendered_the_services_way() {
    let json = |status: StatusCode, message: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": message, "status": status.as_u16() }).to_string(),
        )
            .into_response()
    };
    let app = app(guard().errors(json));
    let cases = [
        (
            request(
                "/debug/leaks?format=pdf",
                Some(LOOPBACK),
                &[("Host", OWN_HOST)],
            ),
            400,
        ),
        (request("/debug/pprof/heap", Some(REMOTE), &[]), 401),
        (
            request(
                "/debug/leaks",
                Some(LOOPBACK),
                &[("Host", OWN_HOST), ("Origin", "null")],
            ),
            403,
        ),
    ];
    for (request, status) in cases {
        let answer = send(&app, request).await;
        assert_eq!(answer.status.as_u16(), status, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert_eq!(body["status"], status, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        let challenge = answer.header("www-authenticate");
        assert_eq!(challenge, (status == 401).then_some("Bearer"), "{answer:?}");
    }
}

#[tokio::test]
async fn merges_into_a_service_router_and_guards_its_admin_routes() {
    #[derive(Clone)]
    struct Service {
        name: &'static str,
    }
    let guard = guard();
    let admin = Router::new()
        .route(
            "/admin/reload",
            axum::routing::post(|| async { "reloaded" }),
        )
        .route_layer(middleware::from_fn_with_state(guard.clone(), super::guard));
    let app: Router = Router::new()
        .route(
            "/hello",
            get(|State(s): State<Service>| async move { s.name }),
        )
        .merge(admin)
        .merge(router(recorder(), guard))
        .fallback(|| async { (StatusCode::NOT_FOUND, "service's own 404") })
        .with_state(Service { name: "svc" });
    let answer = send(&app, request("/hello", Some(REMOTE), &[])).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "svc")
    );
    let answer = send(
        &app,
        request("/debug/nope", Some(LOOPBACK), &[("Host", OWN_HOST)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.text(), "service's own 404");
    let answer = send(
        &app,
        request("/debug/leaks", Some(LOOPBACK), &[("Host", OWN_HOST)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let post = |peer: &str, headers: &[(&str, &str)]| {
        let mut post = request("/admin/reload", Some(peer), headers);
        *post.method_mut() = axum::http::Method::POST;
        post
    };
    let answer = send(&app, post(REMOTE, &[])).await;
    assert_one_line(&answer, StatusCode::UNAUTHORIZED, "admin from afar");
    let answer = send(
        &app,
        post(
            LOOPBACK,
            &[("Host", OWN_HOST), ("Origin", "http://evil.example")],
        ),
    )
    .await;
    assert_one_line(&answer, StatusCode::FORBIDDEN, "admin from a page");
    let answer = send(&app, post(REMOTE, &[("Authorization", "Bearer s3cret")])).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "reloaded")
    );
}

/// Sends `head` (a whole HTTP/1.1 request) to `addr` and reads the answer until the
/// server closes, within 10 s.
async fn exchange(addr: SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(head.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s")
        .expect("the exchange");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn served_with_connect_info_a_loopback_client_gets_in() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("its address");
    let app: Router = router(recorder(), Guard::new().listening_on(addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    let ok = exchange(
        addr,
        &format!(
            "GET /debug/leaks?format=json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert!(ok.contains("\"format\": \"leakwatch-report\""), "{ok}");
    let page = exchange(
        addr,
        &format!(
            "GET /debug/pprof/heap HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://attacker.example\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 403 "), "{page}");
    let rebound = exchange(
        addr,
        &format!(
            "GET /debug/leaks HTTP/1.1\r\nHost: attacker.example:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        ),
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403 "), "{rebound}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops within 10 s")
        .expect("the server task")
        .expect("serve");
}

#[test]
fn a_token_matches_itself_only() {
    let token = Token::new("s3cret");
    assert!(token.matches(b"s3cret"));
    for other in [
        &b""[..],
        b"s3cre",
        b"s3cret2",
        b"S3cret",
        b"s3cret\n",
        b"\0s3cret",
    ] {
        assert!(
            !token.matches(other),
            "{:?}",
            String::from_utf8_lossy(other)
        );
    }
    // Two tokens of one text have their own keys; each matches the text.
    let again = Token::new("s3cret");
    assert_ne!(token.digest, again.digest, "one key for every token");
    assert!(again.matches(b"s3cret"));
}

#[test]
fn debug_output_never_shows_the_token() {
    let guard = guard();
    let shown = format!("{guard:?} {guard:#?} {:?}", Token::new("s3cret"));
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("token: Some(<redacted>)"), "{shown}");
}

#[test]
fn loopback_host_names() {
    for (host, port, expect) in [
        ("localhost:80", Some(80), true),
        ("localhost", Some(80), true),
        ("localhost", Some(8080), false),
        ("localhost:8080", None, true),
        ("localhost", None, true),
        ("127.0.0.1:9", None, true),
        ("127.255.0.1:9", None, true),
        ("[::1]:9", None, true),
        ("[::1]", None, true),
        ("[::ffff:127.0.0.1]:9", None, true),
        ("::1", None, false),
        ("[::1]:", None, false),
        ("localhost:", None, false),
        ("localhost:99999", None, false),
        ("10.0.0.1:9", None, false),
        ("0.0.0.0:9", None, false),
        ("localhost.:9", None, false),
        ("", None, false),
    ] {
        assert_eq!(is_loopback_host(host, port), expect, "{host:?} {port:?}");
    }
}
