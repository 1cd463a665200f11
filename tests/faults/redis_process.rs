//! A redis-server of the test's own, as a child process on a free port with an append-only file
//! fsynced on every write, so it can be killed and restarted on the same port and data.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisProcess {
    /// A fresh server, or `None` (with one line on stderr) when `redis-server` is not installed,
    /// unless `MCP_OAUTH_REQUIRE_REDIS=1`, where that is a failure.
    pub(crate) async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("MCP_OAUTH_REQUIRE_REDIS").as_deref() != Ok("1"),
                "MCP_OAUTH_REQUIRE_REDIS=1 but redis-server is not installed"
            );
            eprintln!("skipping Redis: redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.restart().await;
        Some(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: no shutdown, no final save; only what was fsynced survives.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start (again) on the same port and directory, and wait until it answers with its data
    /// loaded.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(self.port, self.dir.path()));
        for _ in 0..200 {
            if ping(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!("redis-server did not come up on port {}: {log}", self.port);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}

/// Whether the server answers PING (it answers `-LOADING` while it replays its file).
async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(stream.read(&mut answer).await, Ok(n) if answer[..n].starts_with(b"+PONG"))
}
