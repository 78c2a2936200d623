//! A real headless Chromium, driven through ChromeDriver's WebDriver protocol (W3C, JSON
//! over HTTP: a few calls, spoken with this suite's own HTTP client), for the console's tests
//! (`browser.rs`) and the browser tracking library's (`browser_sdk.rs`).
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium`, `chromium-driver`; `./scripts/test`
//! installs them): `CDP_TEST_CHROMEDRIVER` / `CDP_TEST_CHROMIUM` name other paths.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::temp_dir;

pub(crate) const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    process: Child,
    addr: SocketAddr,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub(crate) fn start() -> Self {
        let program =
            std::env::var("CDP_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let process = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {program} ({error}): install Debian's chromium and chromium-driver (./scripts/test does)"
                )
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = temp_dir();
        Self {
            process,
            addr,
            _profile: profile,
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.request(method, path, body);
        assert!(status < 400, "WebDriver {method} {path}: {status} {value}");
        value["value"].clone()
    }

    /// One WebDriver request. ChromeDriver keeps connections open whatever the request
    /// says, so the answer is read by its Content-Length, not to the end of the stream.
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        use std::io::{BufRead as _, Read as _, Write as _};
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status from chromedriver: {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut bytes = vec![0; length];
        reader.read_exact(&mut bytes).unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A browser session: headless Chromium with a fresh profile, in `language`.
    pub(crate) fn browser(&self, language: &str) -> Browser<'_> {
        let chromium =
            std::env::var("CDP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = temp_dir();
        let answer = self.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-quic", "--window-size=1280,1500",
                        format!("--lang={language}"),
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                    "prefs": {"intl.accept_languages": language},
                }
            }}})),
        );
        let id = answer["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver: self,
            id,
            _profile: profile,
        }
    }
}

pub(crate) struct Browser<'a> {
    driver: &'a Driver,
    id: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .request("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Browser<'_> {
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    pub(crate) fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub(crate) fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    pub(crate) fn script_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    pub(crate) fn find_now(&self, css: &str) -> Option<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found.as_array()?.first()?[ELEMENT]
            .as_str()
            .map(str::to_string)
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub(crate) fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(element) = self.find_now(css) {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} on the page: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching `css`. While the page is still laying out (a chart
    /// drawn above a button moves it), the click may land on another element or the element
    /// may be replaced: the driver refuses it ("element click intercepted", "stale element
    /// reference"), and the click is tried again on the element found anew, for up to 10 s.
    pub(crate) fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let element = self.find(css);
            let path = format!("/session/{}/element/{element}/click", self.id);
            let (status, value) = self.driver.request("POST", &path, Some(json!({})));
            if status < 400 {
                return;
            }
            let error = value["value"]["error"].as_str().unwrap_or_default();
            let retry = ["element click intercepted", "stale element reference"].contains(&error);
            assert!(
                retry && Instant::now() < deadline,
                "WebDriver POST {path}: {status} {value}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the first element matching `css`, if there is one. Read by a
    /// script in one step: the pages replace elements as answers arrive, and a reference
    /// found first could be stale by the time its text is asked for.
    pub(crate) fn text_now(&self, css: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .as_str()
        .map(str::to_string)
    }

    pub(crate) fn text_of(&self, css: &str) -> String {
        self.wait_text(css, |_| true)
    }

    /// Waits until the text of `css` satisfies `ready`, and returns it.
    pub(crate) fn wait_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(text) = self.text_now(css)
                && ready(&text)
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never got the expected text; the page says: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn page_text(&self) -> String {
        self.script("return document.body.innerText;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = self.driver.request(
                "POST",
                &format!("/session/{}/alert/accept", self.id),
                Some(json!({})),
            );
            if status < 400 {
                return;
            }
            assert!(Instant::now() < deadline, "no confirmation dialog appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
