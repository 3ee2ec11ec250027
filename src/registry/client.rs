//! The registry API (OCI Distribution) spoken over TLS with kindload's CA as the only
//! root: `ureq` (sync, rustls) does HTTP and TLS; the registry checks every digest itself.

use std::io::Read;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use crate::digest::Hasher;

pub struct Client {
    agent: Agent,
    /// `https://localhost:5001`
    base: String,
}

/// What a blob upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub digest: String,
    pub size: u64,
    /// False when the registry already had it.
    pub sent: bool,
}

impl Client {
    /// A client for `https://<host>`, trusting only `ca_pem`.
    pub fn new(host: &str, ca_pem: &str) -> Result<Client, String> {
        let ca = Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| format!("kindload's CA is unreadable: {e}"))?;
        let tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca])).build();
        let agent: Agent = Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_redirects(0)
            .build()
            .into();
        Ok(Client { agent, base: format!("https://{host}") })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// `GET /v2/`: the registry answers over TLS with a certificate the CA signed.
    pub fn ping(&self) -> Result<(), String> {
        // Bounded as a whole: a port that accepts and never answers is no registry.
        let response = self
            .agent
            .get(self.url("/v2/"))
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .call()
            .map_err(|e| self.unreachable(e))?;
        expect(response, &[200, 401], "GET /v2/").map(drop)
    }

    /// Pings until the registry answers or `deadline` passes; `waiting` is called once, with
    /// the first failure, when it does not answer at once. Returns the last failure.
    pub fn ping_until(&self, deadline: std::time::Instant, waiting: &mut dyn FnMut(&str)) -> Result<(), String> {
        let mut said = false;
        loop {
            let failure = match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if std::time::Instant::now() >= deadline {
                return Err(failure);
            }
            if !said {
                waiting(&failure);
                said = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn unreachable(&self, e: ureq::Error) -> String {
        format!("{} does not answer over TLS: {e}", self.base)
    }

    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, String> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let response = self.agent.head(self.url(&path)).call().map_err(|e| self.unreachable(e))?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => expect(response, &[200], &format!("HEAD {path}")).map(|_| false),
        }
    }

    /// Uploads `size` bytes from `reader` as one blob: POST an upload, PATCH the bytes as
    /// they stream, PUT with the digest computed while reading. `known` (a digest the
    /// archive names the file by) is checked with HEAD first, and the bytes are then only read.
    pub fn upload_blob(
        &self,
        repo: &str,
        reader: &mut dyn Read,
        size: u64,
        known: Option<&str>,
    ) -> Result<Uploaded, String> {
        if let Some(digest) = known {
            if self.has_blob(repo, digest)? {
                let mut hasher = Hasher::default();
                let mut hashing = Hashing { inner: reader, hasher: &mut hasher };
                std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| e.to_string())?;
                let fact = hasher.fact();
                if fact.digest != digest {
                    return Err(format!("a blob named {digest} hashes to {}", fact.digest));
                }
                return Ok(Uploaded { digest: fact.digest, size: fact.size, sent: false });
            }
        }
        let path = format!("/v2/{repo}/blobs/uploads/");
        let response = self.agent.post(self.url(&path)).send_empty().map_err(|e| self.unreachable(e))?;
        let upload = location(&expect(response, &[202], &format!("POST {path}"))?)?;
        let mut hasher = Hasher::default();
        let mut hashing = Hashing { inner: reader, hasher: &mut hasher };
        let response = self
            .agent
            .patch(self.url(&upload))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .send(SendBody::from_reader(&mut hashing))
            .map_err(|e| format!("uploading a blob to {}: {e}", self.base))?;
        let location = location(&expect(response, &[202], "PATCH (blob upload)")?)?;
        let fact = hasher.fact();
        if fact.size != size {
            return Err(format!("the blob ended after {} of {size} bytes", fact.size));
        }
        if let Some(digest) = known.filter(|d| *d != fact.digest) {
            return Err(format!("a blob named {digest} hashes to {}", fact.digest));
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={}", self.url(&location), fact.digest);
        let response = self
            .agent
            .put(url)
            .header("Content-Length", "0")
            .send_empty()
            .map_err(|e| format!("finishing a blob upload to {}: {e}", self.base))?;
        expect(response, &[201], "PUT (blob upload)")?;
        Ok(Uploaded { digest: fact.digest, size: fact.size, sent: true })
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest the registry reports.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String, String> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let response = self
            .agent
            .put(self.url(&path))
            .header("Content-Type", media_type)
            .send(bytes)
            .map_err(|e| self.unreachable(e))?;
        let response = expect(response, &[201], &format!("PUT {path}"))?;
        Ok(header(&response, "Docker-Content-Digest").unwrap_or_else(|| crate::digest::sha256(bytes)))
    }

    /// `GET /v2/<repo>/tags/list`: the repository's tags, none when it does not exist.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, String> {
        let path = format!("/v2/{repo}/tags/list");
        let response = self.agent.get(self.url(&path)).call().map_err(|e| self.unreachable(e))?;
        if response.status().as_u16() == 404 {
            return Ok(Vec::new());
        }
        let mut response = expect(response, &[200], &format!("GET {path}"))?;
        let listed: serde_json::Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().map_err(|e| e.to_string())?)
                .map_err(|e| format!("GET {path}: {e}"))?;
        let tags = listed["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string));
        Ok(tags.collect())
    }

    /// `GET /v2/<repo>/manifests/<reference>`: media type and bytes.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(String, Vec<u8>), String> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let response =
            self.agent.get(self.url(&path)).header("Accept", accept).call().map_err(|e| self.unreachable(e))?;
        let mut response = expect(response, &[200], &format!("GET {path}"))?;
        let media_type = header(&response, "Content-Type").unwrap_or_default();
        let bytes = response.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        Ok((media_type, bytes))
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn location(response: &Response<Body>) -> Result<String, String> {
    header(response, "Location").ok_or_else(|| "the registry gave no upload location".to_string())
}

/// The response when its status is one of `ok`; else an error with the registry's words.
fn expect(mut response: Response<Body>, ok: &[u16], what: &str) -> Result<Response<Body>, String> {
    let status = response.status().as_u16();
    if ok.contains(&status) {
        return Ok(response);
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("{what}: the registry answered {status}: {}", body.trim()))
}

/// Hashes what passes through.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    hasher: &'a mut Hasher,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
