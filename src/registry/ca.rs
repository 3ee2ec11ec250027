//! kindload's local certificate authority and the registry's server certificate, made with
//! `rcgen` and kept under the state directory: the CA once, reused across runs; the server
//! certificate remade only when the names it must be valid for change. Keys are mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Where the CA and the registries' certificates live.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// The files of one registry's certificate, as mounted into its container.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "tls.crt";
const SERVER_KEY: &str = "tls.key";
const SERVER_NAMES: &str = "names.txt";

impl Store {
    /// `<state dir>/registry`.
    pub fn new(state_dir: &Path) -> Self {
        Store { dir: state_dir.join("registry") }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The CA certificate (PEM), when one was made.
    pub fn ca_pem(&self) -> Option<String> {
        fs::read_to_string(self.ca_path()).ok().filter(|pem| pem.contains("BEGIN CERTIFICATE"))
    }

    /// The CA (PEM certificate and its key), made on first use. Returns whether it was made now.
    pub fn ensure_ca(&self) -> Result<(String, bool), String> {
        let key_path = self.dir.join(CA_KEY);
        if let (Some(cert), Ok(key)) = (self.ca_pem(), fs::read_to_string(&key_path)) {
            if KeyPair::from_pem(&key).is_ok() {
                return Ok((cert, false));
            }
        }
        fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kindload local registry CA");
        dn.push(DnType::OrganizationName, "kindload");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let (start, end) = validity(3650);
        params.not_before = start;
        params.not_after = end;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        write_private(&key_path, &key.serialize_pem())?;
        write_public(&self.ca_path(), &cert.pem())?;
        Ok((cert.pem(), true))
    }

    pub fn server_files(&self, registry: &str) -> ServerFiles {
        let dir = self.dir.join(registry);
        ServerFiles { cert: dir.join(SERVER_CERT), key: dir.join(SERVER_KEY), dir }
    }

    /// The registry's certificate, signed by the CA, valid for `names` (host names and
    /// addresses). Kept when it already covers exactly these names and is valid for a month
    /// more; returns whether it was (re)made.
    pub fn ensure_server(&self, registry: &str, names: &[String]) -> Result<(ServerFiles, bool), String> {
        let (ca_pem, ca_made) = self.ensure_ca()?;
        let files = self.server_files(registry);
        let listed = names.join("\n");
        let kept = !ca_made
            && fs::read_to_string(files.dir.join(SERVER_NAMES)).is_ok_and(|n| n == listed)
            && fs::read_to_string(&files.key).is_ok()
            && fs::read_to_string(&files.cert).ok().and_then(|pem| days_left(&pem)).is_some_and(|d| d > 30);
        if kept {
            return Ok((files, false));
        }
        let ca_key = KeyPair::from_pem(&fs::read_to_string(self.dir.join(CA_KEY)).map_err(|e| e.to_string())?)
            .map_err(|e| format!("kindload's CA key is unreadable: {e}"))?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| format!("kindload's CA is unreadable: {e}"))?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName).map_err(|e| format!("{n}: {e}")),
            })
            .collect::<Result<_, String>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, registry);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (start, end) = validity(825);
        params.not_before = start;
        params.not_after = end;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        fs::create_dir_all(&files.dir).map_err(|e| format!("cannot create {}: {e}", files.dir.display()))?;
        write_private(&files.key, &key.serialize_pem())?;
        // The registry in its container reads the key: only the owner (root there, as the
        // engine maps it) needs to, so 0600 stands; the certificate is public.
        write_public(&files.cert, &(cert.pem() + &ca_pem))?;
        write_public(&files.dir.join(SERVER_NAMES), &listed)?;
        Ok((files, true))
    }
}

fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = std::time::SystemTime::now();
    let start = now - std::time::Duration::from_secs(3600);
    let end = now + std::time::Duration::from_secs(days as u64 * 86_400);
    (start.into(), end.into())
}

/// Days until the first certificate in `pem` expires (negative once expired).
pub fn days_left(pem: &str) -> Option<i64> {
    let not_after = not_after_unix(pem)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((not_after - now).div_euclid(86_400))
}

/// When the first certificate in `pem` expires, as seconds since the epoch.
pub fn not_after_unix(pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

fn write_public(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_made_once_with_a_private_key_and_signs_the_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (ca, made) = store.ensure_ca().unwrap();
        assert!(made);
        let (again, made) = store.ensure_ca().unwrap();
        assert!(!made);
        assert_eq!(ca, again);
        let mode = fs::metadata(dir.path().join("registry/ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(days_left(&ca).unwrap() > 3000);

        let names = vec!["kindload-registry".to_string(), "localhost".into(), "127.0.0.1".into()];
        let (files, made) = store.ensure_server("kindload-registry", &names).unwrap();
        assert!(made);
        assert_eq!(fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
        let (_, made) = store.ensure_server("kindload-registry", &names).unwrap();
        assert!(!made, "same names: the certificate is kept");
        let (_, made) = store.ensure_server("kindload-registry", &names[..2]).unwrap();
        assert!(made, "other names: a new certificate");

        let pem = fs::read_to_string(&files.cert).unwrap();
        let (_, first) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = first.parse_x509().unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap().value.general_names.len();
        assert_eq!(sans, 2);
        assert!(cert.issuer().to_string().contains("kindload local registry CA"));
    }
}
