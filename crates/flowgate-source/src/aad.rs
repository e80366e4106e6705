//! Microsoft Entra ID (Azure AD) tokens for the Blob source: a service principal's client
//! secret, AKS workload identity, or a managed identity.
//!
//! Written here rather than taken from `azure_identity` 0.21, which cannot run in
//! production as a sidecar: its workload identity credential reads the federated token
//! file once, so it fails when Kubernetes rotates the projected token (AKS: hourly), and
//! its managed identity credential cannot pick a user-assigned identity. Each flow is one
//! HTTP request on the source's pooled client; the token is cached and renewed five
//! minutes before it expires, and a still-valid token is kept if renewal fails.

use crate::plain_http;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use flowgate_core::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// How to get a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AadMethod {
    /// A service principal's secret (`AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// AKS workload identity: a Kubernetes service account token exchanged for an Entra
    /// token (`AZURE_FEDERATED_TOKEN_FILE`, set by the AKS webhook).
    WorkloadIdentity,
    /// The managed identity of the VM, VM scale set, container app or App Service.
    ManagedIdentity,
}

/// `[sources.NAME.azure_ad]`. Every field left out is taken from the environment
/// variable the Azure SDKs read (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureAdConfig {
    pub method: AadMethod,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The application (client) ID; for a managed identity, selects a user-assigned one.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub federated_token_file: Option<PathBuf>,
    /// `https://login.microsoftonline.com` unless in a sovereign cloud.
    #[serde(default)]
    pub authority_host: Option<String>,
    /// Managed identity endpoint; by default `IDENTITY_ENDPOINT` (App Service, Container
    /// Apps) or the VM's instance metadata service.
    #[serde(default)]
    pub identity_endpoint: Option<String>,
}

const STORAGE_RESOURCE: &str = "https://storage.azure.com/";
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const PUBLIC_CLOUD: &str = "https://login.microsoftonline.com";
/// Renew this long before the token expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl AzureAdConfig {
    /// Checks what can be checked without the environment; errors name the key.
    /// `allow_plain_http`: the account's consent to plain-HTTP URLs to other machines
    /// (otherwise refused: they would carry the client secret or a token in clear).
    pub fn validate(&self, prefix: &str, allow_plain_http: bool) -> Result<(), String> {
        let url_ok = |u: &Option<String>| {
            u.as_deref()
                .is_none_or(|u| u.starts_with("https://") || u.starts_with("http://"))
        };
        if !url_ok(&self.authority_host) {
            return Err(format!("{prefix}.authority_host must be an http(s) URL"));
        }
        if !url_ok(&self.identity_endpoint) {
            return Err(format!("{prefix}.identity_endpoint must be an http(s) URL"));
        }
        let allow = prefix.strip_suffix(".azure_ad").unwrap_or(prefix);
        let allow = format!("{allow}.allow_plain_http");
        let in_clear = |u: &Option<String>, link_local| {
            !allow_plain_http
                && u.as_deref()
                    .is_some_and(|u| plain_http::crosses_network_in_clear(u, link_local))
        };
        if in_clear(&self.authority_host, false) {
            return Err(plain_http::refused(
                &format!("{prefix}.authority_host"),
                "the client secret or federated token",
                &allow,
            ));
        }
        // The metadata service is plain HTTP by design, on this machine or link-local.
        if in_clear(&self.identity_endpoint, true) {
            return Err(plain_http::refused(
                &format!("{prefix}.identity_endpoint"),
                "the managed identity's token",
                &allow,
            ));
        }
        let misplaced = match self.method {
            AadMethod::ClientSecret => self
                .federated_token_file
                .is_some()
                .then_some("federated_token_file"),
            AadMethod::WorkloadIdentity => self.client_secret.is_some().then_some("client_secret"),
            AadMethod::ManagedIdentity => {
                if self.client_secret.is_some() {
                    Some("client_secret")
                } else if self.federated_token_file.is_some() {
                    Some("federated_token_file")
                } else {
                    self.tenant_id.is_some().then_some("tenant_id")
                }
            }
        };
        match misplaced {
            Some(key) => Err(format!(
                "{prefix}.{key} does not go with method = {:?}",
                self.method
            )),
            None => Ok(()),
        }
    }

    /// The credential, with what the config leaves out taken from the environment.
    pub fn build(&self, http: reqwest::Client) -> Result<AadToken, String> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let required = |value: &Option<String>, key: &str, var: &str| {
            value
                .clone()
                .or_else(|| env(var))
                .ok_or_else(|| format!("azure_ad.{key} is not set (nor {var})"))
        };
        let authority = self
            .authority_host
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| PUBLIC_CLOUD.to_owned());
        let token_url = |tenant: &str| {
            format!(
                "{}/{tenant}/oauth2/v2.0/token",
                authority.trim_end_matches('/')
            )
        };
        let flow = match self.method {
            AadMethod::ClientSecret => {
                let tenant = required(&self.tenant_id, "tenant_id", "AZURE_TENANT_ID")?;
                let secret = self
                    .client_secret
                    .clone()
                    .or_else(|| env("AZURE_CLIENT_SECRET").map(Secret::new))
                    .ok_or("azure_ad.client_secret is not set (nor AZURE_CLIENT_SECRET)")?;
                Flow::ClientSecret {
                    url: token_url(&tenant),
                    client_id: required(&self.client_id, "client_id", "AZURE_CLIENT_ID")?,
                    secret,
                }
            }
            AadMethod::WorkloadIdentity => {
                let tenant = required(&self.tenant_id, "tenant_id", "AZURE_TENANT_ID")?;
                let file = self
                    .federated_token_file
                    .clone()
                    .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
                    .ok_or(
                        "azure_ad.federated_token_file is not set (nor AZURE_FEDERATED_TOKEN_FILE)",
                    )?;
                Flow::WorkloadIdentity {
                    url: token_url(&tenant),
                    client_id: required(&self.client_id, "client_id", "AZURE_CLIENT_ID")?,
                    token_file: file,
                }
            }
            AadMethod::ManagedIdentity => {
                let (endpoint, header) = match (
                    self.identity_endpoint.clone(),
                    env("IDENTITY_ENDPOINT"),
                    env("IDENTITY_HEADER"),
                ) {
                    (Some(e), _, header) => (e, header.map(Secret::new)),
                    (None, Some(e), Some(header)) => (e, Some(Secret::new(header))),
                    _ => (IMDS.to_owned(), None),
                };
                Flow::ManagedIdentity {
                    endpoint,
                    header,
                    client_id: self.client_id.clone().or_else(|| env("AZURE_CLIENT_ID")),
                }
            }
        };
        Ok(AadToken {
            http,
            flow,
            cache: Mutex::new(None),
        })
    }
}

enum Flow {
    ClientSecret {
        url: String,
        client_id: String,
        secret: Secret,
    },
    WorkloadIdentity {
        url: String,
        client_id: String,
        /// Read again for every new token: Kubernetes rotates it.
        token_file: PathBuf,
    },
    ManagedIdentity {
        endpoint: String,
        /// `X-IDENTITY-HEADER` of App Service and Container Apps.
        header: Option<Secret>,
        client_id: Option<String>,
    },
}

/// A cached Entra ID token for Azure Storage, renewed before it expires.
pub struct AadToken {
    http: reqwest::Client,
    flow: Flow,
    cache: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for AadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match &self.flow {
            Flow::ClientSecret { .. } => "client_secret",
            Flow::WorkloadIdentity { .. } => "workload_identity",
            Flow::ManagedIdentity { .. } => "managed_identity",
        };
        f.debug_struct("AadToken").field("method", &method).finish()
    }
}

/// A token endpoint's answer. Entra ID sends `expires_in` as a number; the managed
/// identity endpoints send numbers as strings, and App Service only `expires_on`.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<NumberOrString>,
    #[serde(default)]
    expires_on: Option<NumberOrString>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

impl NumberOrString {
    fn get(&self) -> Option<u64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::String(s) => s.trim().parse().ok(),
        }
    }
}

/// An error body of Entra ID or IMDS: `error` and the first line of its description.
#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

fn credential_error(message: String) -> Error {
    Error::message(ErrorKind::Credential, message)
}

impl AadToken {
    async fn request(&self) -> Result<AccessToken, String> {
        let request = match &self.flow {
            Flow::ClientSecret {
                url,
                client_id,
                secret,
            } => self.http.post(url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expose()),
                ("scope", "https://storage.azure.com/.default"),
            ]),
            Flow::WorkloadIdentity {
                url,
                client_id,
                token_file,
            } => {
                let assertion = tokio::fs::read_to_string(token_file)
                    .await
                    .map_err(|e| format!("federated token file {}: {e}", token_file.display()))?;
                self.http.post(url).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.trim()),
                    ("scope", "https://storage.azure.com/.default"),
                ])
            }
            Flow::ManagedIdentity {
                endpoint,
                header,
                client_id,
            } => {
                let mut query = vec![("resource", STORAGE_RESOURCE)];
                let request = match header {
                    Some(h) => {
                        query.push(("api-version", "2019-08-01"));
                        self.http
                            .get(endpoint)
                            .header("X-IDENTITY-HEADER", h.expose())
                    }
                    None => {
                        query.push(("api-version", "2018-02-01"));
                        self.http.get(endpoint).header("Metadata", "true")
                    }
                };
                if let Some(id) = client_id {
                    query.push(("client_id", id));
                }
                request.query(&query)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("token request: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("token response: {e}"))?;
        if !status.is_success() {
            let why = serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| {
                    let description = e.error_description.lines().next().unwrap_or_default();
                    format!("{} {description}", e.error)
                })
                .unwrap_or_default();
            return Err(format!("token request: HTTP {status} {why}"));
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("token response is not a token: {e}"))?;
        let now = unix_now();
        let expires_at = match (
            token.expires_in.and_then(|v| v.get()),
            token.expires_on.and_then(|v| v.get()),
        ) {
            (Some(expires_in), _) => now + expires_in,
            (None, Some(expires_on)) => expires_on,
            (None, None) => now + 300,
        };
        let expires_on = OffsetDateTime::from_unix_timestamp(expires_at as i64)
            .map_err(|_| "token expiry out of range".to_owned())?;
        Ok(AccessToken::new(token.access_token, expires_on))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl TokenCredential for AadToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let mut cache = self.cache.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(token) = cache.as_ref() {
            if token.expires_on - now > RENEW_BEFORE {
                return Ok(token.clone());
            }
        }
        match self.request().await {
            Ok(token) => {
                if cache.is_none() {
                    info!(method = ?self, "Entra ID token obtained");
                }
                *cache = Some(token.clone());
                Ok(token)
            }
            Err(e) => match cache.as_ref() {
                Some(token) if token.expires_on > now => {
                    warn!(error = %e, "cannot renew the Entra ID token; using the current one until it expires");
                    Ok(token.clone())
                }
                _ => Err(credential_error(e)),
            },
        }
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.cache.lock().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(method: AadMethod) -> AzureAdConfig {
        AzureAdConfig {
            method,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            federated_token_file: None,
            authority_host: None,
            identity_endpoint: None,
        }
    }

    #[test]
    fn settings_that_do_not_go_with_the_method_are_refused() {
        let mut c = config(AadMethod::ManagedIdentity);
        assert!(c.validate("s.azure_ad", false).is_ok());
        c.client_secret = Some(Secret::new("x"));
        assert_eq!(
            c.validate("s.azure_ad", false).unwrap_err(),
            "s.azure_ad.client_secret does not go with method = ManagedIdentity"
        );
        let mut c = config(AadMethod::ClientSecret);
        c.authority_host = Some("login.microsoftonline.com".into());
        assert!(c
            .validate("s.azure_ad", false)
            .unwrap_err()
            .contains("authority_host"));
    }

    #[test]
    fn plain_http_to_another_machine_is_refused_unless_allowed() {
        let mut c = config(AadMethod::ClientSecret);
        c.authority_host = Some("http://login.example.net".into());
        let e = c.validate("sources.b.azure_ad", false).unwrap_err();
        assert!(
            e.contains("sources.b.azure_ad.authority_host is plain http")
                && e.contains("sources.b.allow_plain_http"),
            "{e}"
        );
        assert!(c.validate("sources.b.azure_ad", true).is_ok());
        c.authority_host = Some("http://127.0.0.1:8080".into());
        assert!(c.validate("sources.b.azure_ad", false).is_ok());
        let mut c = config(AadMethod::ManagedIdentity);
        c.identity_endpoint = Some("http://169.254.169.254/metadata/identity".into());
        assert!(c.validate("s.azure_ad", false).is_ok());
        c.identity_endpoint = Some("http://10.0.0.9/token".into());
        assert!(c.validate("s.azure_ad", false).is_err());
    }

    #[test]
    fn expiry_numbers_come_as_numbers_or_strings() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"a","expires_in":"3599","expires_on":"1700000000"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in.and_then(|v| v.get()), Some(3599));
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","token_type":"Bearer","expires_in":3599}"#)
                .unwrap();
        assert_eq!(t.expires_in.and_then(|v| v.get()), Some(3599));
    }
}
