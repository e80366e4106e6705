//! rsyslog (Debian's, from `scripts/rsyslog-deps.sh`) as a real syslog receiver, started
//! in the foreground with its own config on free ports: UDP, TCP (octet-counted or
//! newline framing on one port), TLS, and mutual TLS. Every message it receives is
//! written as one JSON object per line with its parsed RFC 5424 fields.

use crate::support::{free_port, make_certs, peer, wait_until, Certs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn rsyslogd_bin() -> Option<PathBuf> {
    peer(
        "FLOWGATE_RSYSLOGD",
        PathBuf::from("/usr/sbin/rsyslogd"),
        "rsyslogd",
        "scripts/rsyslog-deps.sh",
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Rsyslog {
    bin: PathBuf,
    pub dir: PathBuf,
    pub certs: Certs,
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub mtls: u16,
    child: Option<Child>,
}

impl Rsyslog {
    pub fn start(dir: &Path) -> Option<Rsyslog> {
        let bin = rsyslogd_bin()?;
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let certs = make_certs(&dir.join("tls"));
        let mut r = Rsyslog {
            bin,
            dir: dir.to_owned(),
            certs,
            udp: free_udp_port(),
            tcp: free_port(),
            tls: free_port(),
            mtls: free_port(),
            child: None,
        };
        r.write_config();
        r.restart();
        Some(r)
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let (ca, cert, key) = (
            self.certs.ca.display(),
            self.certs.server_cert.display(),
            self.certs.server_key.display(),
        );
        let config = format!(
            r#"global(
  workDirectory="{d}/work"
  maxMessageSize="256k"
  processInternalMessages="on"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imudp")
module(load="imtcp" maxSessions="1000" maxFrameSize="300000")

template(name="flowgate_json" type="list" option.jsonf="on") {{
  property(outname="inputname" name="inputname" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="protocol-version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" format="jsonf" dateFormat="rfc3339")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app-name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured-data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="received") {{
  action(type="omfile" file="{d}/received.jsonl" template="flowgate_json"
         asyncWriting="off" flushOnTXEnd="on")
}}
action(type="omfile" file="{d}/internal.log" asyncWriting="off" flushOnTXEnd="on")

input(type="imudp" address="127.0.0.1" port="{udp}" name="udp" ruleset="received"
      rateLimit.interval="0" rcvBufSize="16m")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp" ruleset="received"
      rateLimit.interval="0")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls" ruleset="received"
      rateLimit.interval="0"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{mtls}" name="mtls" ruleset="received"
      rateLimit.interval="0"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"#,
            udp = self.udp,
            tcp = self.tcp,
            tls = self.tls,
            mtls = self.mtls,
        );
        std::fs::write(self.dir.join("rsyslog.conf"), config).unwrap();
    }

    /// (Re)starts on the same ports; returns once every TCP listener accepts.
    pub fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        let listening = wait_until(Duration::from_secs(10), || {
            [self.tcp, self.tls, self.mtls]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(listening, "rsyslogd: {}", self.internal_log());
    }

    /// SIGTERM and wait: what it wrote stays in the file.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if !wait_until(Duration::from_secs(10), || c.try_wait().unwrap().is_some()) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// Every complete message received so far, parsed.
    pub fn received(&self) -> Vec<serde_json::Value> {
        let bytes = std::fs::read(self.dir.join("received.jsonl")).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// How many messages have arrived (cheaper than `received`).
    pub fn count(&self) -> usize {
        let bytes = std::fs::read(self.dir.join("received.jsonl")).unwrap_or_default();
        bytes.iter().filter(|&&b| b == b'\n').count()
    }

    pub fn internal_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("internal.log")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
