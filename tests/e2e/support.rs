//! What the end-to-end tests share: paths, running the binary, finding test peers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flowgate")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Runs `flowgate ARGS` with `stdin`, returning its output.
pub fn flowgate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowgate runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// True under CI, where a missing test peer is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The Python with PyPI `cefp` (see `scripts/python-deps.sh`), or `None` outside CI.
pub fn python_with_cefp() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FLOWGATE_PYTHON").map(PathBuf::from),
        Some(repo().join(".venv/bin/python")),
    ];
    for python in candidates.into_iter().flatten() {
        let ok = Command::new(&python)
            .args(["-c", "import cefp"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    assert!(
        !in_ci(),
        "CI=true but no Python with cefp: run scripts/python-deps.sh (or set FLOWGATE_PYTHON)"
    );
    eprintln!("skipping: no Python with cefp (run scripts/python-deps.sh)");
    None
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A test peer's program: `$var`, else `default` (where its `scripts/*-deps.sh` puts
/// it); `None` outside CI when it is missing, a failure under `CI=true`.
pub fn peer(var: &str, default: PathBuf, what: &str, script: &str) -> Option<PathBuf> {
    let candidates = [std::env::var_os(var).map(PathBuf::from), Some(default)];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.exists()) {
        return Some(found);
    }
    assert!(!in_ci(), "CI=true but {what} is missing: run {script}");
    eprintln!("skipping: {what} not installed ({script})");
    None
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What `flowgate convert --source local FILE` makes of `file`: the events the service
/// must deliver for it, in order. (A file with bad records exits 1 but still prints every
/// good tuple, which is what the service delivers too.)
pub fn converted(file: &Path) -> Vec<String> {
    converted_as(file, "local")
}

/// `converted` for a source named `source`.
pub fn converted_as(file: &Path, source: &str) -> Vec<String> {
    let out = flowgate(
        &["convert", "--source", source, file.to_str().unwrap()],
        None,
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The offsets `flowgate checkpoints` lists for the config at `config` (the service must
/// be stopped: the store is locked while it runs), one per followed object.
pub fn checkpoint_offsets(config: &str) -> Vec<u64> {
    let out = flowgate(&["checkpoints", "--config", config], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let first = l.split_whitespace().next().unwrap_or_default();
            first
                .parse()
                .unwrap_or_else(|_| panic!("not a checkpoint line: {l}"))
        })
        .collect()
}

/// A `flowgate run` in a directory of its own: `flowgate.toml` (written by the test),
/// `out.cef` (the file sink, by convention) and `stderr.log`.
pub struct Instance {
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Instance {
    pub fn new() -> Instance {
        Instance {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> String {
        self.path("flowgate.toml").display().to_string()
    }

    /// Puts `file` into the input directory (`in/`) as its `index`-th object, written
    /// elsewhere and renamed so that flowgate never sees half of it; returns its events.
    pub fn add_input(&self, index: usize, file: &Path) -> Vec<String> {
        let dir = self.path(&format!("in/{index:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = self.path("incoming.json");
        std::fs::copy(file, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("PT1H.json")).unwrap();
        converted(file)
    }

    /// Writes `flowgate.toml`: a `local` source named `local` over `in/`, then `tables`
    /// (sinks, `[filter]`, `[pipeline]`, ...), then the checkpoint store.
    pub fn write_local_config(&self, tables: &str) {
        let config = format!(
            "[sources.local]\ntype = \"local\"\npath = \"{input}\"\npoll_interval_secs = 0.2\n\n{tables}\n\n[checkpoints]\npath = \"{cp}\"\n",
            input = self.path("in").display(),
            cp = self.path("cp.redb").display(),
        );
        std::fs::write(self.path("flowgate.toml"), config).unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("stderr.log"))
            .unwrap();
        self.child = Some(
            Command::new(bin())
                .args(["run", "--config", &self.config()])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGTERM, then the exit status must be 0.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let ok = wait_until(Duration::from_secs(30), || {
            child.try_wait().unwrap().is_some()
        });
        assert!(ok, "flowgate did not stop after SIGTERM");
        let status = child.wait().unwrap();
        assert!(status.success(), "exit status {status}: {}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for an exit the test caused (a signal it sent); the status must be 0.
    pub fn wait_exit(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = wait_until(Duration::from_secs(30), || {
            child.try_wait().unwrap().is_some()
        });
        assert!(ok, "flowgate did not exit");
        let status = child.wait().unwrap();
        assert!(status.success(), "exit status {status}: {}", self.log());
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    pub fn output(&self) -> Vec<String> {
        lines(&self.path("out.cef"))
    }

    pub fn wait_for_lines(&self, n: usize) {
        let ok = wait_until(Duration::from_secs(60), || self.output().len() >= n);
        assert!(
            ok,
            "expected {n} lines, have {}\n{}",
            self.output().len(),
            self.log()
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A throwaway CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, made with the `openssl` command.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=flowgate-test-ca \
  -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$who.flowgate.test \
    -keyout $who.key -out $who.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s.flowgate.test\nextendedKeyUsage=serverAuth,clientAuth\n' $who > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.pem 2>/dev/null
done
"#;
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .expect("openssl");
    assert!(status.success(), "making test certificates failed");
    Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// Every file below `dir`, sorted by path (hourly blob paths sort by time).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
