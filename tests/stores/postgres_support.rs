//! What the PostgreSQL tests of the test binaries (`stores`, and `flows` and `faults` through a
//! `#[path]` module) share: the test server's URL, a schema of their own per test, and a private
//! cluster that an outage test stops and starts.
//!
//! Opt-in: set `MCP_OAUTH_TEST_POSTGRES_URL=postgres://user@127.0.0.1:PORT/db`. Without it every
//! PostgreSQL test passes after one skip line, unless `MCP_OAUTH_REQUIRE_POSTGRES=1` (CI), which
//! makes a missing URL (or missing server binaries for the outage tests) a failure.

#![allow(dead_code, reason = "shared by three test binaries, each using a part")]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use mcp_oauth::backends::postgres::sqlx;

pub(crate) const URL_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_URL";
pub(crate) const REQUIRE_VAR: &str = "MCP_OAUTH_REQUIRE_POSTGRES";
/// The directory of `initdb` and `pg_ctl`, for the private clusters (else the newest
/// `/usr/lib/postgresql/*/bin`, as Debian installs them, else `PATH`).
pub(crate) const BIN_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_BIN";
/// Whom a test running as root runs the private clusters as (PostgreSQL refuses root): default
/// `postgres`, the user Debian's package creates.
pub(crate) const USER_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_USER";

pub(crate) fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Say once per test binary why PostgreSQL tests are skipped, past the output capture.
pub(crate) fn skip(why: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "skipping PostgreSQL tests: {why}");
    });
}

/// The PostgreSQL to test against, or `None` (after the skip line) when there is none and none is
/// required.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if required() => panic!(
            "{REQUIRE_VAR}=1 but {URL_VAR} is not set: the PostgreSQL tests need a server \
             (e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres)"
        ),
        _ => {
            skip(&format!(
                "set {URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run them"
            ));
            None
        }
    }
}

/// `url` with its connections' `search_path` set to `schema`.
pub(crate) fn in_schema(url: &str, schema: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    url.into()
}

/// A new, empty schema on the test server, and the URL whose connections use it: each test gets
/// its own tables, so tests run in parallel on one database.
pub(crate) async fn new_schema(url: &str) -> (String, String) {
    let schema = format!("mcp_oauth_test_{:016x}", rand::random::<u64>());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} ({URL_VAR}): {e}"));
    // The name is ours (hex digits), not input: formatting it in is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    (in_schema(url, &schema), schema)
}

/// A URL on the test server whose connections use a new, empty schema of their own, or `None`
/// (after the skip line) when skipping. For flow tests: the schema is left on the throw-away
/// server, as the Redis flow tests leave their prefixes.
pub(crate) async fn fresh_postgres_url() -> Option<String> {
    let server = postgres_url()?;
    Some(new_schema(&server).await.0)
}

/// Drop a schema made by [`new_schema`], with everything in it.
pub(crate) async fn drop_schema(url: &str, schema: &str) {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory holding `initdb` and `pg_ctl`, or `None` when PostgreSQL's server is not
/// installed.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var(BIN_VAR) {
        return Some(PathBuf::from(dir));
    }
    let newest_debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest_debian {
        return Some(bin);
    }
    let on_path = Command::new("pg_ctl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(PathBuf::new)
}

/// A private PostgreSQL cluster: its own data directory (removed when dropped) and loopback port,
/// no Unix socket, trust authentication, `fsync` off (nothing here must survive a power loss).
/// Stopped on every exit path, panics included.
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    run_as: Option<String>,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Create and start a cluster, or `None` (after a skip line; a failure under
    /// `MCP_OAUTH_REQUIRE_POSTGRES=1`) when PostgreSQL's server binaries are not installed.
    pub(crate) fn start() -> Option<Self> {
        let cluster = Self::init()?;
        cluster.start_again();
        Some(cluster)
    }

    /// A started cluster that accepts TLS connections only (`hostssl` alone in `pg_hba.conf`),
    /// with a self-signed certificate for `127.0.0.1` made by `openssl`, and that certificate's
    /// path; `None` as for [`start`](Self::start).
    pub(crate) fn start_tls_only() -> Option<(Self, PathBuf)> {
        let openssl_available = Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !openssl_available {
            assert!(
                !required(),
                "{REQUIRE_VAR}=1 but there is no openssl to make the TLS test's certificate"
            );
            let _ = writeln!(
                std::io::stderr(),
                "skipping a PostgreSQL TLS test: no openssl"
            );
            return None;
        }
        let cluster = Self::init()?;
        let mut openssl = cluster.command_at(Path::new("openssl"));
        let output = openssl
            .current_dir(cluster.data())
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-keyout",
                "server.key",
                "-out",
                "server.crt",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .output()
            .expect("openssl, to make the test cluster's certificate");
        assert!(
            output.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.append_settings(
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        );
        std::fs::write(
            cluster.data().join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        cluster.start_again();
        let certificate = cluster.data().join("server.crt");
        Some((cluster, certificate))
    }

    /// Create a cluster, not started.
    fn init() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                !required(),
                "{REQUIRE_VAR}=1 but there are no PostgreSQL server binaries (initdb, pg_ctl) \
                 for the outage test: set {BIN_VAR}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "skipping a PostgreSQL outage test: no initdb/pg_ctl (set {BIN_VAR})"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let run_as = (dir.path().metadata().unwrap().uid() == 0)
            .then(|| std::env::var(USER_VAR).unwrap_or_else(|_| "postgres".to_owned()));
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown {user} {}", dir.path().display());
        }
        let cluster = Self {
            bin,
            run_as,
            dir,
            port: free_port(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.append_settings(&format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\n",
            cluster.port
        ));
        Some(cluster)
    }

    /// Append lines to `postgresql.conf` (later lines win).
    fn append_settings(&self, settings: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .unwrap();
        file.write_all(settings.as_bytes()).unwrap();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The superuser's URL on the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `program` from the bin directory, as the unprivileged user when running as root.
    fn command(&self, program: &str) -> Command {
        self.command_at(&self.bin.join(program))
    }

    /// `program`, as the unprivileged user when running as root.
    fn command_at(&self, program: &Path) -> Command {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// Run `program`, which must succeed.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        output
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data().display().to_string();
        let log = self.log().display().to_string();
        let mut all = vec!["-D", &data, "-l", &log, "-w"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Start the stopped cluster, waiting until it accepts connections.
    pub(crate) fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    /// Stop the cluster as a crash would (`-m immediate`: every connection cut, no checkpoint).
    pub(crate) fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let data = self.data().display().to_string();
            let _ = self
                .command("pg_ctl")
                .args(["-D", &data, "-w", "stop", "-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
