//! The gateway's dashboard (`serverset serve`, `GET /`) in a real browser:
//! headless Chromium driven over WebDriver (chromedriver from
//! `testkit::Browser`), against the real binary and a real ZooKeeper.
//!
//! A member registered before the page opens is listed and marked leader;
//! a second one appears highlighted as joined; when the first leaves, its
//! row is struck through, then removed, and the second becomes the leader.
//! Then the page switches to another set with the form (Enter), and shows
//! the gateway's error for a bad path.
//!
//! Every wait polls the page with a generous deadline; nothing is asserted
//! after a fixed sleep.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client as WebDriver, ClientBuilder, Locator};
use serde_json::Value;
use serversets::{Client, Endpoint, Member, Registration, ServerSetPath};

/// How long any awaited state may take (bounds a broken run only).
const DEADLINE: Duration = common::DEADLINE;

/// How often the page is polled while waiting.
const POLL: Duration = Duration::from_millis(50);

/// A running `serverset serve`, killed on drop; its stderr is collected
/// for failure messages. It can be stopped and started again on its port.
struct Gateway {
    connect: String,
    port: u16,
    child: Mutex<Option<Child>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Gateway {
    /// Starts the gateway on a free port and waits until `/healthz`
    /// answers 200 (its ZooKeeper session is up). Retries with another
    /// port if the chosen one was taken meanwhile (the process exits).
    async fn start(connect: &str) -> Gateway {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let gateway = Gateway {
                connect: connect.to_owned(),
                port: testkit::free_port().expect("free port"),
                child: Mutex::new(None),
                stderr: Arc::new(Mutex::new(Vec::new())),
            };
            match gateway.launch().await {
                Ok(()) => return gateway,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the gateway did not start:\n{}", failures.join("\n---\n"));
    }

    /// Starts the process on `self.port` and waits until it is healthy.
    async fn launch(&self) -> Result<(), String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serverset"))
            .args(["serve", &self.connect, "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .env_remove("SERVERSET_TOKEN")
            .env_remove("SERVERSET_DIGEST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serverset serve");
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let sink = Arc::clone(&self.stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        *self.child.lock().unwrap() = Some(child);
        let result = self.wait_healthy().await;
        if result.is_err() {
            self.stop();
        }
        result
    }

    async fn wait_healthy(&self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        let url = format!("{}/healthz", self.base_url());
        let deadline = Instant::now() + DEADLINE;
        loop {
            let exited = match self.child.lock().unwrap().as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => return Err("not running".into()),
            };
            if let Some(status) = exited {
                return Err(format!("exited ({status}): {}", self.stderr()));
            }
            if let Ok(response) = http.get(&url).send().await {
                if response.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{url} never answered 200: {}", self.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (a crash, as far as the page can tell).
    fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    async fn restart(&self) {
        if let Err(failure) = self.launch().await {
            panic!("the gateway did not start again: {failure}");
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the page shows, read in one script run.
const SNAPSHOT: &str = r##"
const text = (id) => {
  const el = document.getElementById(id);
  return el ? el.textContent.replace(/\s+/g, " ").trim() : null;
};
const rows = Array.from(document.querySelectorAll("#members tr[data-member]")).map((tr) => ({
  member: tr.dataset.member,
  classes: Array.from(tr.classList),
  leader: tr.querySelector(".leader") !== null,
  cells: Array.from(tr.cells).map((c) => c.textContent.replace(/\s+/g, " ").trim()),
  elements_in_metadata: tr.cells[6] ? tr.cells[6].querySelectorAll("b, script").length : -1,
}));
const error = document.getElementById("error");
return {
  rows,
  count: text("count"),
  status: text("status"),
  caption: document.querySelector("#members caption")?.textContent ?? null,
  error: error && !error.hidden ? error.textContent : "",
  path_param: new URL(location.href).searchParams.get("path"),
  suggestions: Array.from(document.querySelectorAll("#paths option")).map((o) => o.value),
  title: document.title,
};
"##;

/// One reading of the page.
#[derive(Debug)]
struct Page(Value);

impl Page {
    fn rows(&self) -> &[Value] {
        self.0["rows"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }

    fn members(&self) -> Vec<&str> {
        self.rows()
            .iter()
            .filter_map(|r| r["member"].as_str())
            .collect()
    }

    fn row(&self, member: &str) -> Option<&Value> {
        self.rows().iter().find(|r| r["member"] == member)
    }

    fn has_class(&self, member: &str, class: &str) -> bool {
        self.row(member).is_some_and(|r| {
            r["classes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == class))
        })
    }

    fn is_leader(&self, member: &str) -> bool {
        self.row(member).is_some_and(|r| r["leader"] == true)
    }

    /// The text of column `i` of the member's row.
    fn cell(&self, member: &str, i: usize) -> Option<&str> {
        self.row(member)?["cells"][i].as_str()
    }

    fn count(&self) -> &str {
        self.0["count"].as_str().unwrap_or("")
    }

    fn status(&self) -> &str {
        self.0["status"].as_str().unwrap_or("")
    }

    fn str(&self, key: &str) -> &str {
        self.0[key].as_str().unwrap_or("")
    }
}

/// The browser session and what is needed to explain a failure.
struct Session<'a> {
    driver: WebDriver,
    browser: &'a testkit::Browser,
    gateway: &'a Gateway,
}

impl Session<'_> {
    async fn page(&self) -> Page {
        Page(
            self.driver
                .execute(SNAPSHOT, vec![])
                .await
                .expect("read the page"),
        )
    }

    /// Polls the page until `ready` holds; panics (with the last reading,
    /// a screenshot and the logs) after the deadline.
    async fn wait(&self, what: &str, ready: impl Fn(&Page) -> bool) -> Page {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let page = self.page().await;
            if ready(&page) {
                return page;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("dashboard-failure.png").await;
                panic!(
                    "timed out waiting until {what}\nlast reading: {:#}\nscreenshot: {}\n\
                     gateway stderr:\n{}\nchromedriver log:\n{}",
                    page.0,
                    shot.display(),
                    self.gateway.stderr(),
                    self.browser.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves a screenshot in cargo's temporary directory for tests.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        if let Ok(png) = self.driver.screenshot().await {
            let _ = std::fs::write(&path, png);
        }
        path
    }

    /// Types `text` into the path field, replacing what is there, and
    /// presses Enter.
    async fn watch_with_form(&self, text: &str) {
        let field = self
            .driver
            .find(Locator::Id("path"))
            .await
            .expect("the path field");
        field.clear().await.expect("clear the path field");
        field
            .send_keys(&format!("{text}{}", char::from(Key::Enter)))
            .await
            .expect("type a path");
    }
}

/// The member name (`member_NNNNNNNNNN`) of a registration.
fn member_name(registration: &Registration) -> String {
    let znode = registration.znode().expect("registered");
    znode.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_joins_leaves_and_the_leader() {
    // First, as it may install Chromium (minutes on a fresh machine).
    let browser = testkit::Browser::start().expect("start chromedriver");
    let zk = common::zookeeper();
    let connect = zk.connect_string();
    let gateway = Gateway::start(&connect).await;

    let client = Client::connect(&connect).await.expect("connect");
    let path = ServerSetPath::new("/discovery/test/web").unwrap();
    let first = client
        .register(&path, Member::new(Endpoint::new("127.0.0.1", 9001)))
        .await
        .expect("register the first member");
    let first_name = member_name(&first);

    let capabilities = serde_json::from_str(&browser.capabilities_json().expect("capabilities"))
        .expect("capabilities are a JSON object");
    let driver = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&browser.webdriver_url())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "WebDriver session: {err}\nchromedriver log:\n{}",
                browser.log_tail()
            )
        });
    let session = Session {
        driver,
        browser: &browser,
        gateway: &gateway,
    };

    // Opened directly on the set: the member registered before is listed,
    // as the leader, without the highlight of a join.
    session
        .driver
        .goto(&format!(
            "{}/?path={}",
            gateway.base_url(),
            path.as_str().replace('/', "%2F")
        ))
        .await
        .expect("open the dashboard");
    let page = session
        .wait("the first member is listed as the leader", |p| {
            p.members() == [first_name.as_str()] && p.is_leader(&first_name) && p.count() == "1"
        })
        .await;
    assert_eq!(page.cell(&first_name, 1), Some("127.0.0.1:9001"));
    assert_eq!(page.cell(&first_name, 4), Some("ALIVE"));
    assert!(
        !page.has_class(&first_name, "joined"),
        "a member of the initial set is no join: {page:?}"
    );
    assert_eq!(page.str("title"), "/discovery/test/web – serversets");
    assert_eq!(page.str("path_param"), path.as_str());
    assert!(
        page.str("caption").contains(path.as_str()),
        "caption: {page:?}"
    );
    let page = session
        .wait("the stream is open and both healths are Connected", |p| {
            p.status().contains("Stream: open")
                && p.status().contains("Watch: Connected")
                && p.status().contains("Session: Connected")
        })
        .await;
    assert_eq!(page.str("error"), "");
    session
        .wait("the watched set is among the suggestions", |p| {
            p.0["suggestions"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == path.as_str()))
        })
        .await;

    // A second member joins: highlighted, with every column shown as text
    // (markup in metadata stays text), the first still the leader.
    let second = client
        .register(
            &path,
            Member::new(Endpoint::new("127.0.0.1", 9002))
                .with_shard(2)
                .with_additional("http", Endpoint::new("127.0.0.1", 8002))
                .with_metadata("zone", "<b>eu-1</b>"),
        )
        .await
        .expect("register the second member");
    let second_name = member_name(&second);
    assert!(first_name < second_name);
    let page = session
        .wait("the second member appears as joined", |p| {
            p.has_class(&second_name, "joined") && p.count() == "2"
        })
        .await;
    session.screenshot("dashboard-joined.png").await;
    assert_eq!(
        page.members(),
        [first_name.as_str(), second_name.as_str()],
        "sorted by member name"
    );
    assert!(page.is_leader(&first_name) && !page.is_leader(&second_name));
    assert_eq!(page.cell(&second_name, 1), Some("127.0.0.1:9002"));
    assert_eq!(page.cell(&second_name, 2), Some("2"));
    assert_eq!(page.cell(&second_name, 3), Some("1"));
    assert_eq!(page.cell(&second_name, 5), Some("http=127.0.0.1:8002"));
    assert_eq!(page.cell(&second_name, 6), Some("zone=<b>eu-1</b>"));
    assert_eq!(page.row(&second_name).unwrap()["elements_in_metadata"], 0);
    session
        .wait("the join highlight fades", |p| {
            p.row(&second_name).is_some() && !p.has_class(&second_name, "joined")
        })
        .await;

    // The first member leaves: struck through, then removed; the second
    // becomes the leader.
    first.close().await;
    let page = session
        .wait("the first member is shown as left", |p| {
            p.has_class(&first_name, "left")
        })
        .await;
    session.screenshot("dashboard-left.png").await;
    assert!(
        !page.is_leader(&first_name),
        "a member that left is no leader: {page:?}"
    );
    let page = session
        .wait("the first member's row is removed", |p| {
            p.members() == [second_name.as_str()]
        })
        .await;
    let page = if page.is_leader(&second_name) && page.count() == "1" {
        page
    } else {
        session
            .wait("the second member is the leader", |p| {
                p.is_leader(&second_name) && p.count() == "1"
            })
            .await
    };
    assert_eq!(page.cell(&second_name, 1), Some("127.0.0.1:9002"));

    // The gateway goes away: the page says it reconnects, and the healths
    // it last heard of are no longer shown. Meanwhile the second member
    // leaves too; once the gateway is back, the page resyncs from the
    // fresh stream's `current`: the set is empty.
    gateway.stop();
    session
        .wait("the page reconnects", |p| {
            p.status().contains("Stream: reconnecting")
                && p.status().contains("Watch: –")
                && p.status().contains("Session: –")
        })
        .await;
    second.close().await;
    gateway.restart().await;
    let page = session
        .wait("the page is back with the empty set", |p| {
            p.status().contains("Stream: open")
                && p.status().contains("Session: Connected")
                && p.members().is_empty()
                && p.count() == "0"
        })
        .await;
    assert_eq!(page.str("error"), "");

    // Another set, chosen with the form (Enter): only its member is shown,
    // and the URL names it.
    let other = ServerSetPath::new("/discovery/test/api").unwrap();
    let third = client
        .register(&other, Member::new(Endpoint::new("127.0.0.1", 9003)))
        .await
        .expect("register in the other set");
    let third_name = member_name(&third);
    session.watch_with_form(other.as_str()).await;
    let page = session
        .wait("the other set is shown", |p| {
            p.str("path_param") == other.as_str()
                && p.members() == [third_name.as_str()]
                && p.is_leader(&third_name)
                && p.count() == "1"
        })
        .await;
    assert_eq!(page.cell(&third_name, 1), Some("127.0.0.1:9003"));

    // A bad path: the gateway's error is shown, and no members.
    session.watch_with_form("not-a-path").await;
    let page = session
        .wait("the error of a bad path is shown", |p| {
            !p.str("error").is_empty() && p.members().is_empty()
        })
        .await;
    session.screenshot("dashboard-error.png").await;
    assert!(page.status().contains("Stream: closed"), "status: {page:?}");

    session
        .driver
        .close()
        .await
        .expect("end the browser session");
    drop(third);
    client.close().await;
}
