//! Real mTLS for records that carry a peer certificate (`peer_uri_san`): a throwaway CA
//! made per run, a server certificate for Envoy's `mtls` listener, one client certificate
//! per URI SAN (made on first use), and a rustls client that presents it. Envoy then sees
//! the same `connection.uri_san_peer_certificate` the recording names, so partner rules
//! that match on it are exercised for real rather than assumed.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::bootstrap::MtlsListener;

/// A TLS stream to Envoy's `mtls` listener.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The run's CA, the listener's files and the client configurations made so far.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    listener: MtlsListener,
    clients: BTreeMap<String, Arc<rustls::ClientConfig>>,
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("mtls: {what}: {e}")
}

impl Pki {
    /// Makes the CA and the server certificate (for `localhost` and `127.0.0.1`) and
    /// writes the listener's PEM files into `dir`.
    pub fn create(dir: &Path) -> Result<Self, String> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_error("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "stakeguard replay CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let ca = CertifiedIssuer::self_signed(params, ca_key).map_err(|e| tls_error("CA", e))?;

        let server_key = KeyPair::generate().map_err(|e| tls_error("server key", e))?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(|e| tls_error("server parameters", e))?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &ca)
            .map_err(|e| tls_error("server certificate", e))?;

        let listener = MtlsListener {
            cert_chain: dir.join("server.pem"),
            private_key: dir.join("server.key"),
            client_ca: dir.join("ca.pem"),
        };
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| tls_error(&path.display().to_string(), e))
        };
        write(&listener.cert_chain, server_cert.pem())?;
        write(&listener.private_key, server_key.serialize_pem())?;
        write(&listener.client_ca, ca.pem())?;
        Ok(Self {
            ca,
            listener,
            clients: BTreeMap::new(),
        })
    }

    /// The files Envoy's `mtls` listener needs.
    pub fn listener(&self) -> &MtlsListener {
        &self.listener
    }

    /// A client configuration that trusts the CA and presents a certificate whose only
    /// SAN is `uri_san`.
    pub fn client(&mut self, uri_san: &str) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(config) = self.clients.get(uri_san) {
            return Ok(Arc::clone(config));
        }
        let key = KeyPair::generate().map_err(|e| tls_error("client key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_error("client parameters", e))?;
        let uri = uri_san
            .to_owned()
            .try_into()
            .map_err(|e| tls_error(&format!("URI SAN `{uri_san}`"), e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.ca)
            .map_err(|e| tls_error("client certificate", e))?;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.der().clone())
            .map_err(|e| tls_error("trust the CA", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private)
            .map_err(|e| tls_error("client certificate", e))?;
        let config = Arc::new(config);
        self.clients.insert(uri_san.to_owned(), Arc::clone(&config));
        Ok(config)
    }
}

/// Wraps a connected socket in a TLS client session for `localhost`; the handshake runs
/// on first use of the stream.
pub fn wrap(config: Arc<rustls::ClientConfig>, tcp: TcpStream) -> std::io::Result<TlsStream> {
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}
