//! The HTTP edge: every error a client can provoke, the router's own rejections included, is
//! problem+json with the right status; slow, idle and too many clients cannot hold the local
//! server's connections (and file descriptors) forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use labeling_local::http::Limits;
use labeling_local::{Local, Options, ServeOptions};
use labeling_tests::{on_aws, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "edge-admin-token";

/// One request that must fail, and how.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    status: StatusCode,
    kind: &'static str,
    detail_mentions: &'static str,
}

#[tokio::test]
async fn every_rejection_is_problem_json_with_the_right_status() {
    let app = spawn_app().await;
    let project = "p_does_not_matter";
    let three_mib = {
        let mut body = b"{\"name\": \"".to_vec();
        body.resize(3 * 1024 * 1024, b'a');
        body.extend_from_slice(b"\"}");
        body
    };
    let cases = [
        Case {
            what: "a signed-URL expiry that is not a number",
            method: Method::GET,
            path: "/blobs/photos/a.png?expires=abc&signature=x".to_owned(),
            body: None,
            status: StatusCode::BAD_REQUEST,
            kind: "bad-query",
            detail_mentions: "expires",
        },
        Case {
            what: "an item page size that is not a number",
            method: Method::GET,
            path: format!("/projects/{project}/items?limit=abc"),
            body: None,
            status: StatusCode::BAD_REQUEST,
            kind: "bad-query",
            detail_mentions: "limit",
        },
        Case {
            what: "a method the route does not serve",
            method: Method::DELETE,
            path: "/healthz".to_owned(),
            body: None,
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "method-not-allowed",
            detail_mentions: "DELETE",
        },
        Case {
            what: "a JSON body over the 2 MiB limit",
            method: Method::POST,
            path: "/projects".to_owned(),
            body: Some(three_mib),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too-large",
            detail_mentions: "2097152",
        },
        Case {
            what: "a path parameter that is not UTF-8 once decoded",
            method: Method::GET,
            path: "/projects/%FF%FE".to_owned(),
            body: None,
            status: StatusCode::BAD_REQUEST,
            kind: "bad-request",
            detail_mentions: "UTF-8",
        },
        Case {
            what: "a route that does not exist",
            method: Method::GET,
            path: "/no/such/route".to_owned(),
            body: None,
            status: StatusCode::NOT_FOUND,
            kind: "not-found",
            detail_mentions: "route",
        },
    ];
    // On the AWS store S3 serves signed URLs: this server has no /blobs route there.
    for case in cases
        .into_iter()
        .filter(|case| !(on_aws() && case.path.starts_with("/blobs/")))
    {
        let mut request = app
            .client
            .request(case.method.clone(), format!("{}{}", app.base, case.path))
            .bearer_auth(&app.admin);
        if let Some(body) = case.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let what = case.what;
        assert_eq!(response.status(), case.status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        if case.status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = response.headers()["allow"].to_str().unwrap().to_owned();
            assert!(allow.contains("GET"), "{what}: Allow is {allow}");
        }
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("https://labeling.dev/problems/{}", case.kind),
            "{what}: {problem}"
        );
        assert_eq!(problem["status"], case.status.as_u16(), "{what}");
        assert_eq!(
            problem["title"],
            case.status.canonical_reason().unwrap(),
            "{what}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(case.detail_mentions),
            "{what}: the detail should mention {:?}: {detail}",
            case.detail_mentions
        );
    }
}

#[tokio::test]
async fn a_bad_query_parameter_is_named_in_the_problem() {
    let app = spawn_app().await;
    let reply = app
        .get("/projects/p_any/items?state=labeled&limit=-3", &app.admin)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["parameter"], "limit", "{}", reply.body);
}

/// A local server with `limits`, stopped when dropped.
struct Server {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    data_dir: std::path::PathBuf,
}

impl Server {
    async fn start(limits: Limits) -> Self {
        let data_dir = std::env::temp_dir().join(labeling_testkit::unique("labeling-edge"));
        let mut options = Options::new(&data_dir);
        options.admin_token = Some(ADMIN.to_owned());
        let local = Local::open(options).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(local.serve_with(
            listener,
            ServeOptions {
                limits,
                public_url: None,
            },
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            address,
            stop: Some(stop),
            serving: Some(serving),
            data_dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A connection that sent the start of a request and nothing more.
    async fn half_sent_header(&self) -> TcpStream {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: labeling\r\nX-Slow: ")
            .await
            .unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Reads until the server closes the connection, or `patience` runs out (None).
async fn closed_by_server(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(patience, stream.read_to_end(&mut sink)).await {
        Ok(_) => Some(start.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_after_the_header_timeout_while_healthz_answers() {
    if on_aws() {
        return;
    }
    let header_timeout = Duration::from_millis(1500);
    let server = Server::start(Limits {
        header_read_timeout: header_timeout,
        ..Limits::default()
    })
    .await;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(server.half_sent_header().await);
    }

    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        opened.elapsed() < header_timeout,
        "healthz answered while the slow clients were all still connected"
    );

    for stream in &mut slow {
        let closed = closed_by_server(stream, Duration::from_secs(10)).await;
        assert!(
            closed.is_some(),
            "a half-sent header is still open 10 s later"
        );
    }
    assert!(
        opened.elapsed() >= header_timeout,
        "closed by the header timeout, not before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    if on_aws() {
        return;
    }
    let server = Server::start(Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let first = server.half_sent_header().await;
    let _second = server.half_sent_header().await;

    let third = tokio::spawn(reqwest::get(server.url("/healthz")));
    // Wall-clock waiting is the point here: nothing the server does can be observed sooner
    // than "not served yet".
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while the limit of two was taken"
    );

    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third connection is served once one of the two closes")
        .unwrap()
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_stops_arriving_is_closed_after_the_idle_timeout() {
    if on_aws() {
        return;
    }
    let idle_timeout = Duration::from_millis(800);
    let server = Server::start(Limits {
        idle_timeout,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /projects HTTP/1.1\r\nHost: labeling\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\": "
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();

    let closed = closed_by_server(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "a stalled body held its connection 10 s");
    assert!(
        started.elapsed() >= idle_timeout,
        "closed before being idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_while_a_client_holds_a_half_sent_header() {
    if on_aws() {
        return;
    }
    let mut server = Server::start(Limits {
        header_read_timeout: Duration::from_secs(120),
        shutdown_grace: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let _slow = server.half_sent_header().await;
    let idle_keep_alive = reqwest::Client::new();
    let reply = idle_keep_alive
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);

    let _ = server.stop.take().unwrap().send(());
    let serving = server.serving.take().unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), serving).await;
    assert!(
        stopped.is_ok(),
        "shutdown still waits 10 s later, for a client that never finishes its header"
    );
    stopped.unwrap().unwrap().unwrap();
}
