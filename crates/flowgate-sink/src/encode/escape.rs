//! Escaping for each format: a field value must never break its format or the framing.

/// Appends `s`, replacing each byte for which `map` returns an escape.
#[inline]
fn escape_with(s: &str, out: &mut Vec<u8>, map: impl Fn(u8) -> Option<&'static [u8]>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(rep) = map(b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(rep);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// CEF header field: `\` and `|` escaped; CR, LF and other control characters but tab
/// (not allowed in a header) become spaces.
pub fn cef_header(s: &str, out: &mut Vec<u8>) {
    escape_with(s, out, |b| match b {
        b'\\' => Some(b"\\\\"),
        b'|' => Some(b"\\|"),
        0..=0x08 | 0x0a..=0x1f | 0x7f => Some(b" "),
        _ => None,
    })
}

/// CEF extension value: `\`, `=`, LF and CR escaped as the CEF specification says; other
/// control characters but tab (NUL, ESC, ... from a database or a user's file), which CEF
/// has no escape for and receivers mangle, become spaces.
pub fn cef_value(s: &str, out: &mut Vec<u8>) {
    escape_with(s, out, |b| match b {
        b'\\' => Some(b"\\\\"),
        b'=' => Some(b"\\="),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        0..=0x08 | 0x0a..=0x1f | 0x7f => Some(b" "),
        _ => None,
    })
}

/// LEEF header field: like CEF's.
pub fn leef_header(s: &str, out: &mut Vec<u8>) {
    cef_header(s, out)
}

/// LEEF attribute value (tab-delimited): `\`, tab, LF and CR become `\\`, `\t`, `\n`, `\r`;
/// other control characters become spaces. `=` and `|` need no escape: QRadar splits each
/// attribute at its first `=`.
pub fn leef_value(s: &str, out: &mut Vec<u8>) {
    escape_with(s, out, |b| match b {
        b'\\' => Some(b"\\\\"),
        b'\t' => Some(b"\\t"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        0..=0x1f | 0x7f => Some(b" "),
        _ => None,
    })
}

/// JSON string contents (without quotes), per RFC 8259.
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&str, &mut Vec<u8>), s: &str) -> String {
        let mut v = Vec::new();
        f(s, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn each_format() {
        let nasty = "a|b=c\\d\ne\rf\tg\"h\u{1}";
        assert_eq!(run(cef_header, nasty), "a\\|b=c\\\\d e f\tg\"h ");
        assert_eq!(run(cef_value, nasty), "a|b\\=c\\\\d\\ne\\rf\tg\"h ");
        assert_eq!(run(leef_value, nasty), "a|b=c\\\\d\\ne\\rf\\tg\"h ");
        assert_eq!(run(json_str, nasty), "a|b=c\\\\d\\ne\\rf\\tg\\\"h\\u0001");
        assert_eq!(run(cef_value, "plain"), "plain");
        assert_eq!(run(json_str, "ünï"), "ünï");
    }
}
