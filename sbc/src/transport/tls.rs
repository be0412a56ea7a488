//! TLS for SIP (RFC 3261 §26.2.1; RFC 5246/8446 via rustls with the `ring` provider): server
//! certificate from PEM files, client configuration toward carriers (configured CA file and,
//! optionally, the system roots; SNI), and reload without restart that keeps the running
//! configuration when the new files are bad.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use parking_lot::{Mutex, RwLock};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    server::WebPkiClientVerifier,
    sign::CertifiedKey,
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, UnixTime,
    pem::{self, PemObject},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::settings::TlsSettings;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM or holds no item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls rejected the material (unsupported key, key not matching the certificate, …).
    #[error("{what}: {source}")]
    Rustls {
        /// Which step.
        what: &'static str,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A listener needs a certificate but none is configured.
    #[error("no certificate configured (tls.cert / tls.key)")]
    NoCertificate,
}

/// The loaded configurations, swapped as a whole on reload.
#[derive(Debug)]
struct Loaded {
    /// `None` when no certificate is configured (outbound-only TLS).
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
}

/// TLS state shared by listeners and outbound connections.
#[derive(Debug)]
pub(crate) struct TlsContext {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    /// Identity of the files as last loaded, to detect changes.
    stamps: Mutex<Vec<Option<Stamp>>>,
}

impl TlsContext {
    /// Loads every configured file; any problem is an error.
    pub(crate) fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = stamps(&settings);
        let loaded = build(&settings, &provider)?;
        Ok(Self {
            settings,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        })
    }

    /// Re-reads the files. On error the running configuration stays and the error is
    /// returned for the caller to log; connections already established are never affected.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let stamps = stamps(&self.settings);
        // Remember the stamps even on failure so a bad file is not retried every poll; the
        // next change (or SIGHUP) retries.
        *self.stamps.lock() = stamps;
        let loaded = build(&self.settings, &self.provider)?;
        *self.current.write() = Arc::new(loaded);
        Ok(())
    }

    /// Whether a file changed (time, inode or size) since it was last loaded.
    pub(crate) fn files_changed(&self) -> bool {
        stamps(&self.settings) != *self.stamps.lock()
    }

    /// The acceptor with the current certificate, if one is configured.
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current.read().server.clone().map(TlsAcceptor::from)
    }

    /// The connector with the current client configuration.
    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.current.read().client.clone())
    }

    /// Whether a certificate for listeners is loaded.
    pub(crate) fn has_certificate(&self) -> bool {
        self.current.read().server.is_some()
    }
}

fn paths(s: &TlsSettings) -> impl Iterator<Item = &Path> {
    [&s.cert, &s.key, &s.ca]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
}

/// What identifies a version of a file: modification time, plus inode and size so that a
/// replacement by rename (or a symlink swap, as secret stores do) is seen even when the
/// file system's timestamps are coarse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    inode: u64,
    len: u64,
}

fn stamps(s: &TlsSettings) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    paths(s)
        .map(|p| {
            fs::metadata(p).ok().map(|m| Stamp {
                modified: m.modified().ok(),
                inode: m.ino(),
                len: m.len(),
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: &pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what: format!("invalid PEM: {e:?}"),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_owned(),
            what: "no PRIVATE KEY block found".into(),
        },
        e => pem_error(path, &e),
    })
}

fn build(s: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<Loaded, TlsError> {
    let rustls_err = |what| move |source| TlsError::Rustls { what, source };
    let identity = match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = private_key(key)?;
            // Checks that the key is usable and matches the leaf certificate, so a mismatched
            // pair is refused at load (and a reload keeps the old pair), not at handshake.
            let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), provider)
                .map_err(rustls_err("certificate and key"))?;
            drop(certified);
            Some((chain, key))
        }
        _ => None,
    };
    let mut roots = RootCertStore::empty();
    if let Some(ca) = &s.ca {
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(rustls_err("CA certificate in tls.ca"))?;
        }
    }
    let file_roots = roots.len();
    if s.system_roots {
        // Unreadable system certificates are skipped: the configured CA file still applies.
        let native = rustls_native_certs::load_native_certs();
        let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    }

    let server = match &identity {
        Some((chain, key)) => {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(rustls_err("TLS versions"))?;
            let builder = if s.require_client_cert {
                let mut client_roots = RootCertStore::empty();
                if let Some(ca) = &s.ca {
                    client_roots.add_parsable_certificates(certificates(ca)?);
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(client_roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::Pem {
                    path: s.ca.clone().unwrap_or_default(),
                    what: format!("unusable for client verification: {e}"),
                })?;
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            let config = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(rustls_err("server certificate"))?;
            Some(Arc::new(config))
        }
        None => None,
    };

    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("TLS versions"))?;
    let builder = if s.verify_server {
        if roots.is_empty() {
            tracing::warn!(
                file_roots,
                "no trusted roots for TLS servers: outbound TLS connections will fail"
            );
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification(
                provider.signature_verification_algorithms,
            )))
    };
    // Carriers that authenticate the SBC by certificate (mutual TLS) get the same identity the
    // listeners present.
    let client = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(rustls_err("client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Loaded {
        server,
        client: Arc::new(client),
    })
}

/// Accepts any server certificate (`tls.verify_server = false`, lab use only) while still
/// checking handshake signatures, so the connection is at least consistent.
#[derive(Debug)]
struct NoServerVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}
