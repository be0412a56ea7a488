//! TLS: handshake and exchange with a test CA, SNI toward carriers, certificate reload.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sbc_proto::net::{Peer, Side, TransportKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use super::{Harness, any_port, ok_response, options};
use crate::transport::{TlsSettings, TransportConfig};

const TLS: TransportKind = TransportKind::Tls;

/// A test certificate authority that issues leaf certificates.
struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "SBC test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA cert");
        Self { cert, key }
    }

    fn issue(&self, names: &[&str], cn: &str) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA root");
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    // Write then rename, as deployment tools do, so a reader never sees half a file.
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &p).expect("rename");
    p
}

/// Settings with the leaf as server certificate and `ca` trusted.
fn settings(dir: &Path, ca: &TestCa, leaf: &Leaf) -> TlsSettings {
    TlsSettings {
        cert: Some(write(dir, "sbc.crt", &leaf.cert_pem)),
        key: Some(write(dir, "sbc.key", &leaf.key_pem)),
        ca: Some(write(dir, "ca.pem", &ca.cert.pem())),
        system_roots: false,
        verify_server: true,
        require_client_cert: false,
        reload_check: None,
    }
}

/// A TLS client of the SBC that trusts `ca`.
async fn client(ca: &TestCa, addr: SocketAddr, sni: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The leaf certificate a server presents to a fresh client.
async fn presented(ca: &TestCa, addr: SocketAddr) -> CertificateDer<'static> {
    let s = tokio::time::timeout(Duration::from_secs(5), client(ca, addr, "sip.test"))
        .await
        .expect("handshake within 5 s")
        .expect("handshake");
    s.get_ref().1.peer_certificates().expect("server certs")[0].clone()
}

async fn read_n(s: &mut (impl AsyncReadExt + Unpin), n: usize) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("bytes within 5 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

fn tls_inside(tls: TlsSettings) -> TransportConfig {
    let mut c = TransportConfig::new();
    c.inside.tls = vec![any_port("127.0.0.1")];
    c.outside.udp = vec![any_port("127.0.0.2")];
    c.tls = Some(tls);
    c
}

#[tokio::test]
async fn tls_listener_handshake_exchange_and_ping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let leaf = ca.issue(&["sip.test", "127.0.0.1"], "sbc");
    let mut h = Harness::start(tls_inside(settings(dir.path(), &ca, &leaf)));
    let addr = h.addr(Side::Inside, TLS);
    let mut s = client(&ca, addr, "sip.test").await.expect("handshake");
    s.write_all(b"\r\n\r\n").await.expect("ping");
    s.flush().await.expect("flush");
    assert_eq!(read_n(&mut s, 2).await, "\r\n");
    s.write_all(options("t").as_bytes()).await.expect("write");
    s.flush().await.expect("flush");
    let m = h.next().await;
    assert_eq!(m.peer.transport, TLS);
    assert!(m.peer.conn.is_some());
    // The listener it reached: the core answers with that listener's Contact.
    assert_eq!(m.peer.local, Some(addr));
    let resp = ok_response("t");
    h.transport
        .send(&m.peer, Bytes::from(resp.clone()))
        .expect("send");
    assert_eq!(read_n(&mut s, resp.len()).await, resp);

    // A client that does not trust the SBC's CA fails, and the failure is counted.
    let stranger = TestCa::new();
    assert!(client(&stranger, addr, "sip.test").await.is_err());
    h.eventually("handshake failure counted", |h| {
        h.dropped(Side::Inside, TLS, "tls_handshake") == 1
    })
    .await;
}

/// A carrier's TLS server: accepts one connection, reports the SNI it got and the first
/// message.
async fn carrier(listener: TcpListener, leaf: &Leaf) -> std::io::Result<(Option<String>, String)> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())
        .expect("server config");
    let (tcp, _) = listener.accept().await?;
    let mut s = TlsAcceptor::from(Arc::new(config)).accept(tcp).await?;
    let sni = s.get_ref().1.server_name().map(str::to_owned);
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await?;
    Ok((sni, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

#[tokio::test]
async fn outbound_tls_sends_sni_and_verifies_the_carrier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let sbc_leaf = ca.issue(&["sbc.test"], "sbc");
    let carrier_leaf = ca.issue(&["sip.carrier.test"], "carrier");
    let listener = TcpListener::bind(any_port("127.0.0.1"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = TransportConfig::new();
    config.outside.udp = vec![any_port("127.0.0.2")];
    config.tls = Some(settings(dir.path(), &ca, &sbc_leaf));
    config.tls_names.insert(addr, "sip.carrier.test".to_owned());
    let h = Harness::start(config);
    let to = Peer {
        side: Side::Outside,
        transport: TLS,
        addr,
        conn: None,
        local: None,
    };
    let msg = options("c");
    h.transport
        .send(&to, Bytes::from(msg.clone()))
        .expect("send");
    let (sni, got) = tokio::time::timeout(Duration::from_secs(5), carrier(listener, &carrier_leaf))
        .await
        .expect("within 5 s")
        .expect("carrier handshake");
    assert_eq!(sni.as_deref(), Some("sip.carrier.test"));
    assert_eq!(got, msg);

    // A carrier whose certificate does not carry the expected name is refused.
    let listener = TcpListener::bind(any_port("127.0.0.1"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    assert!(h.transport.set_tls_server_name(addr, "other.carrier.test"));
    let to = Peer { addr, ..to };
    h.transport.send(&to, Bytes::from(msg)).expect("queued");
    let result = tokio::time::timeout(Duration::from_secs(5), carrier(listener, &carrier_leaf))
        .await
        .expect("within 5 s");
    assert!(result.is_err(), "the SBC aborts the handshake");
    h.eventually("connect failure counted", |h| {
        h.send_errors(Side::Outside, TLS, "connect_failed") == 1
    })
    .await;
}

#[tokio::test]
async fn reload_picks_up_a_new_certificate_and_keeps_the_old_one_when_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = ca.issue(&["sip.test"], "first");
    let h = Harness::start(tls_inside(settings(dir.path(), &ca, &first)));
    let addr = h.addr(Side::Inside, TLS);
    assert_eq!(presented(&ca, addr).await, first.cert_der);

    let second = ca.issue(&["sip.test"], "second");
    write(dir.path(), "sbc.crt", &second.cert_pem);
    write(dir.path(), "sbc.key", &second.key_pem);
    assert!(h.transport.reload_tls().expect("reload"));
    assert_eq!(presented(&ca, addr).await, second.cert_der);

    // Garbage certificate: refused, the running one stays.
    write(dir.path(), "sbc.crt", "not a certificate");
    assert!(h.transport.reload_tls().is_err());
    assert_eq!(presented(&ca, addr).await, second.cert_der);
    // A valid certificate with the wrong key: refused too.
    let third = ca.issue(&["sip.test"], "third");
    write(dir.path(), "sbc.crt", &third.cert_pem);
    assert!(h.transport.reload_tls().is_err());
    assert_eq!(presented(&ca, addr).await, second.cert_der);
    let errors = h.metrics.tls_reloads.with_label_values(&["error"]).get();
    assert_eq!(errors, 2);
}

#[tokio::test]
async fn changed_files_are_reloaded_by_the_modification_time_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = ca.issue(&["sip.test"], "first");
    let mut tls = settings(dir.path(), &ca, &first);
    tls.reload_check = Some(Duration::from_millis(20));
    let h = Harness::start(tls_inside(tls));
    let addr = h.addr(Side::Inside, TLS);
    assert_eq!(presented(&ca, addr).await, first.cert_der);
    let second = ca.issue(&["sip.test"], "second");
    write(dir.path(), "sbc.key", &second.key_pem);
    write(dir.path(), "sbc.crt", &second.cert_pem);
    h.eventually("reloaded", |h| {
        h.metrics.tls_reloads.with_label_values(&["ok"]).get() >= 1
    })
    .await;
    // The key and certificate may have been seen half-updated once; wait for a good pair.
    for _ in 0..100 {
        if presented(&ca, addr).await == second.cert_der {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("new certificate not picked up");
}

#[test]
fn bad_files_at_start_are_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let leaf = ca.issue(&["sip.test"], "sbc");
    let mut tls = settings(dir.path(), &ca, &leaf);
    tls.key = Some(dir.path().join("missing.key"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let metrics = crate::metrics::Metrics::new().expect("metrics");
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err =
        crate::transport::Transport::start(tls_inside(tls), &metrics, tx).expect_err("missing key");
    assert!(err.to_string().contains("missing.key"), "{err}");
}

#[tokio::test]
async fn required_client_certificate_is_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let leaf = ca.issue(&["sip.test"], "sbc");
    let mut tls = settings(dir.path(), &ca, &leaf);
    tls.require_client_cert = true;
    let mut h = Harness::start(tls_inside(tls));
    let addr = h.addr(Side::Inside, TLS);

    // Without a client certificate the SBC ends the handshake (TLS 1.3 reports it on the
    // client's first read).
    let refused = async {
        let mut s = client(&ca, addr, "sip.test").await?;
        s.write_all(options("n").as_bytes()).await?;
        s.flush().await?;
        let mut buf = [0u8; 16];
        s.read(&mut buf).await
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("within 5 s");
    assert!(matches!(outcome, Err(_) | Ok(0)), "{outcome:?}");

    // With a certificate from the trusted CA it works.
    let pbx = ca.issue(&["pbx.test"], "pbx");
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_client_auth_cert(vec![pbx.cert_der.clone()], pbx.key_der.clone_key())
        .expect("client auth");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("sip.test").expect("name");
    let mut s = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    s.write_all(options("y").as_bytes()).await.expect("write");
    s.flush().await.expect("flush");
    assert_eq!(h.next().await.message.call_id(), "y@pbx");
}

/// Admission comes before the handshake: a source outside the allowlist gets a reset, never a
/// ServerHello (no certificate, no TLS work for it), and it is counted as `acl`.
#[tokio::test]
async fn a_source_outside_the_allowlist_is_refused_before_the_tls_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let leaf = ca.issue(&["sip.test", "127.0.0.1"], "sbc");
    let mut config = tls_inside(settings(dir.path(), &ca, &leaf));
    config.admission = crate::transport::AdmissionPolicy {
        inside: Some(vec!["127.0.0.1/32".parse().expect("literal")]),
        outside: Some(Vec::new()),
        deny: Vec::new(),
    };
    let h = Harness::start(config);
    let addr = h.addr(Side::Inside, TLS);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(any_port("127.0.0.2")).expect("bind");
    let mut tcp = socket.connect(addr).await.expect("connect");
    // A ClientHello's worth of bytes: nothing comes back but the close.
    let _ = tcp
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0])
        .await;
    let mut buf = [0u8; 1024];
    let got = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed within 5 s");
    assert!(matches!(got, Ok(0) | Err(_)), "the SBC answered: {got:?}");
    h.eventually("refusal counted", |h| {
        h.dropped(Side::Inside, TLS, "acl") == 1
    })
    .await;
    assert_eq!(h.dropped(Side::Inside, TLS, "tls_handshake"), 0);
    // The allowed source still completes its handshake.
    presented(&ca, addr).await;
}
