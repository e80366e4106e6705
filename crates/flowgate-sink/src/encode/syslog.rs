//! Syslog headers (RFC 5424, or RFC 3164) in front of any format.

use super::write;
use flowgate_core::{Action, FlowEvent};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogKind {
    /// No syslog header: the bare CEF/LEEF/JSON message.
    #[default]
    None,
    Rfc5424,
    Rfc3164,
}

impl std::str::FromStr for SyslogKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(SyslogKind::None),
            "rfc5424" => Ok(SyslogKind::Rfc5424),
            "rfc3164" => Ok(SyslogKind::Rfc3164),
            _ => Err(format!(
                "unknown syslog header {s:?} (none, rfc5424, rfc3164)"
            )),
        }
    }
}

/// The header's fields; `validate()` keeps them within what the RFCs allow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `none`, `rfc5424` or `rfc3164`; when not set, the sink's default (no header for
    /// stdout and files, RFC 5424 for the syslog sink).
    pub kind: Option<SyslogKind>,
    /// Facility name (`local0`..`local7`, `user`, `daemon`, `auth`, ...) or number 0–23.
    pub facility: String,
    /// Severity of allowed flows (`informational` by default).
    pub allow_severity: String,
    /// Severity of denied flows (`warning` by default).
    pub deny_severity: String,
    /// HOSTNAME field; empty means this machine's host name.
    pub hostname: String,
    pub app_name: String,
    pub msgid: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            kind: None,
            facility: "local0".into(),
            allow_severity: "informational".into(),
            deny_severity: "warning".into(),
            hostname: String::new(),
            app_name: "flowgate".into(),
            msgid: "FLOW".into(),
        }
    }
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

fn lookup(name: &str, table: &[&str]) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return ((n as usize) < table.len()).then_some(n);
    }
    table
        .iter()
        .position(|t| t.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// RFC 5424 header fields are printable US-ASCII without spaces, with length limits.
fn check_field(key: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max || !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!(
            "syslog.{key} must be 1 to {max} printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

impl SyslogConfig {
    /// Checks the config without I/O; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        lookup(&self.facility, &FACILITIES)
            .ok_or_else(|| format!("syslog.facility: unknown facility {:?}", self.facility))?;
        for (key, v) in [
            ("allow_severity", &self.allow_severity),
            ("deny_severity", &self.deny_severity),
        ] {
            lookup(v, &SEVERITIES)
                .ok_or_else(|| format!("syslog.{key}: unknown severity {v:?}"))?;
        }
        if !self.hostname.is_empty() {
            check_field("hostname", &self.hostname, 255)?;
        }
        check_field("app_name", &self.app_name, 48)?;
        if self.app_name.is_empty() {
            return Err("syslog.app_name must not be empty".into());
        }
        // RFC 3164 §4.1.3: the TAG is at most 32 alphanumeric characters; a `:` or `[`
        // in it would end it early for the receiver.
        if self.kind == Some(SyslogKind::Rfc3164)
            && (self.app_name.len() > 32
                || !self
                    .app_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)))
        {
            return Err(
                "syslog.app_name is the RFC 3164 TAG: 1 to 32 letters, digits, '-', '_', '.' or '/'"
                    .into(),
            );
        }
        // RFC 5424 §6.2.7: MSGID = NILVALUE / 1*32PRINTUSASCII.
        if self.msgid.is_empty() {
            return Err("syslog.msgid must not be empty (\"-\" for none)".into());
        }
        check_field("msgid", &self.msgid, 32)?;
        Ok(())
    }

    /// The header writer, `kind` defaulting to `default_kind`; call after `validate()`.
    pub fn build(&self, default_kind: SyslogKind) -> Option<SyslogHeader> {
        let kind = self.kind.unwrap_or(default_kind);
        if kind == SyslogKind::None {
            return None;
        }
        let facility = lookup(&self.facility, &FACILITIES).unwrap_or(16);
        let pri = |sev: &str| facility * 8 + lookup(sev, &SEVERITIES).unwrap_or(6);
        let host = if self.hostname.is_empty() {
            local_hostname()
        } else {
            self.hostname.clone()
        };
        let mut middle = Vec::new();
        middle.push(b' ');
        middle.extend_from_slice(host.as_bytes());
        middle.push(b' ');
        middle.extend_from_slice(self.app_name.as_bytes());
        match kind {
            SyslogKind::Rfc5424 => {
                middle.extend_from_slice(b" - ");
                middle.extend_from_slice(self.msgid.as_bytes());
                middle.extend_from_slice(b" - ");
            }
            _ => middle.extend_from_slice(b": "),
        }
        Some(SyslogHeader {
            kind,
            allow_pri: pri(&self.allow_severity),
            deny_pri: pri(&self.deny_severity),
            middle,
        })
    }
}

/// This machine's host name, sanitised for a syslog header; `-` (nil) if unknown.
fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// Writes the header of one event's message.
#[derive(Debug, Clone)]
pub struct SyslogHeader {
    kind: SyslogKind,
    allow_pri: u8,
    deny_pri: u8,
    /// Everything between the timestamp and the message, precomputed.
    middle: Vec<u8>,
}

impl SyslogHeader {
    pub fn write(&self, e: &FlowEvent, out: &mut Vec<u8>) {
        out.push(b'<');
        write::uint(
            out,
            match e.action {
                Action::Allow => self.allow_pri,
                Action::Deny => self.deny_pri,
            },
        );
        out.push(b'>');
        // The flow's own time, so the SIEM files the event when the flow happened.
        match self.kind {
            SyslogKind::Rfc5424 => {
                out.extend_from_slice(b"1 ");
                write::rfc3339_ms(out, e.time_ms);
            }
            _ => write::rfc3164(out, e.time_ms),
        }
        out.extend_from_slice(&self.middle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_key() {
        let mut c = SyslogConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.facility = "local9".into();
        assert!(c.validate().unwrap_err().starts_with("syslog.facility"));
        c.facility = "23".into();
        c.app_name = "flow gate".into();
        assert!(c.validate().unwrap_err().starts_with("syslog.app_name"));
        c.app_name = "flowgate".into();
        c.msgid = String::new();
        assert!(c.validate().unwrap_err().starts_with("syslog.msgid"));
        c.msgid = "-".into();
        assert_eq!(c.validate(), Ok(()));
        c.app_name = "a".repeat(33);
        assert_eq!(c.validate(), Ok(()), "48 for RFC 5424");
        c.kind = Some(SyslogKind::Rfc3164);
        assert!(c.validate().unwrap_err().contains("RFC 3164 TAG"));
        c.app_name = "flowgate:x".into();
        assert!(c.validate().unwrap_err().contains("RFC 3164 TAG"));
        c.app_name = "flowgate".into();
        assert_eq!(c.validate(), Ok(()));
        c.deny_severity = "loud".into();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("syslog.deny_severity"));
    }
}
