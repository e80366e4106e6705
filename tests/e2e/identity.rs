//! A stand-in for Microsoft Entra ID's token endpoint (which cannot run here): it answers
//! `POST /{tenant}/oauth2/v2.0/token` with a JWT that Azurite's `--oauth basic` accepts
//! (issuer, audience and lifetime checked, signature not), and records every form it got.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub type Form = BTreeMap<String, String>;

pub struct IdentityProvider {
    pub port: u16,
    pub forms: Arc<Mutex<Vec<(String, Form)>>>,
}

impl IdentityProvider {
    /// Tokens live `expires_in` seconds; a client assertion equal to `refused` gets a 400.
    pub fn start(tenant: &str, expires_in: u64, refused: &'static str) -> IdentityProvider {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let forms: Arc<Mutex<Vec<(String, Form)>>> = Arc::default();
        let seen = forms.clone();
        let tenant = tenant.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap_or_default();
                let path = request_line
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap_or_default();
                let form = parse_form(&String::from_utf8_lossy(&body));
                let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                seen.lock().unwrap().push((path.clone(), form));
                let (status, json) = if path != format!("/{tenant}/oauth2/v2.0/token") {
                    ("404 Not Found", r#"{"error":"not_found"}"#.to_owned())
                } else if assertion == refused {
                    (
                        "400 Bad Request",
                        r#"{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range.\r\nTrace ID: 1"}"#.to_owned(),
                    )
                } else {
                    let token = jwt(&tenant, expires_in);
                    (
                        "200 OK",
                        format!(
                            r#"{{"token_type":"Bearer","expires_in":{expires_in},"access_token":"{token}"}}"#
                        ),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
            }
        });
        IdentityProvider { port, forms }
    }

    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn forms(&self) -> Vec<(String, Form)> {
        self.forms.lock().unwrap().clone()
    }
}

fn parse_form(body: &str) -> Form {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// An unsigned JWT for Azure Storage, as Entra ID would issue for `tenant`.
fn jwt(tenant: &str, expires_in: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = r#"{"alg":"RS256","typ":"JWT"}"#;
    let claims = format!(
        r#"{{"aud":"https://storage.azure.com","iss":"https://sts.windows.net/{tenant}/","iat":{},"nbf":{},"exp":{},"oid":"flowgate-test","tid":"{tenant}"}}"#,
        now - 60,
        now - 60,
        now + expires_in
    );
    format!(
        "{}.{}.c2lnbmF0dXJl",
        base64url(header.as_bytes()),
        base64url(claims.as_bytes())
    )
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
