//! TLS: one trust store. Discord and the LLM providers are reached through reqwest with
//! rustls and the OS trust store (rustls-native-certs, which honours `SSL_CERT_FILE`), no
//! bundled roots: the real binary reaches the fakes behind a TLS front whose certificate is
//! issued by a CA made here, only when `SSL_CERT_FILE` names that CA.
//!
//! Also the helpers of the OTLP-over-TLS tests in `traces.rs`: [`Pki`] and [`TlsFront`].

use crate::support::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(30);

/// A CA and a server certificate it issued for `localhost` and `127.0.0.1`, in PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);

        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.use_authority_key_identifier_extension = true;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert_pem = server.signed_by(&key, &issuer).unwrap().pem();
        Self {
            ca_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `path` (for `SSL_CERT_FILE`,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub fn write_ca(&self, env: &TestEnv, rel: &str) -> PathBuf {
        env.write(rel, &self.ca_pem)
    }
}

/// A TLS-terminating front on `127.0.0.1:0` for a plain TCP backend (a fake's HTTP server):
/// each connection's TLS is ended here and its bytes are copied to and from the backend.
/// Handshakes the client aborts (an untrusted certificate) end the connection, nothing else.
pub struct TlsFront {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// `alpn`: the protocols offered (`http/1.1` for the fakes' HTTP/1 servers).
    pub async fn start(backend: SocketAddr, pki: &Pki, alpn: &[&[u8]]) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` of a fake's `http://…` base URL.
fn backend(base_url: &str) -> SocketAddr {
    let url = url::Url::parse(base_url).unwrap();
    url.socket_addrs(|| None).unwrap()[0]
}

/// `actor_server.toml` as [`TestEnv::config`] writes it, with the Discord and LLM base URLs
/// replaced.
fn config_with(env: &TestEnv, discord: &str, llm: &str) {
    let path = env.config("", TIP_ONCE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            &format!("\"{}\"", env.discord.base_url()),
            &format!("\"{discord}\""),
        )
        .replace(
            &format!("\"{}\"", env.llm.base_url()),
            &format!("\"{llm}\""),
        );
    std::fs::write(path, text).unwrap();
}

/// `serve`, with `SSL_CERT_FILE` = `ca_file` (and no `SSL_CERT_DIR`), stderr to `stderr.log`.
fn serve(env: &TestEnv, ca_file: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::File::create(env.path("stderr.log")).unwrap();
    env.command(&["serve"])
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn stderr_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("stderr.log")).unwrap_or_default()
}

async fn wait_until(env: &TestEnv, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not {what} within {LIMIT:?}; stderr:\n{}",
            stderr_of(env)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What rustls says of a certificate from an issuer nobody trusts.
const UNKNOWN_ISSUER: &str = "invalid peer certificate: UnknownIssuer";

/// Asserts that a log line with `message` gives as its cause `what`, then the unknown issuer.
#[track_caller]
fn assert_logged(env: &TestEnv, message: &str, what: &str) {
    let logs = stderr_of(env);
    let line = logs
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no `{message}` line:\n{logs}"));
    let cause = line
        .split_once(what)
        .unwrap_or_else(|| panic!("no `{what}` in: {line}"))
        .1;
    assert!(cause.contains(UNKNOWN_ISSUER), "{line}");
}

/// With `SSL_CERT_FILE` naming the CA, the binary's LLM calls and its Discord delivery both
/// succeed against the fakes behind TLS (certificates from that CA): both clients take the
/// OS trust store, and bundle no roots of their own.
#[tokio::test]
async fn llm_and_discord_trust_the_ca_of_ssl_cert_file() {
    let env = TestEnv::new().await;
    let pki = Pki::new("trusted");
    let http1: &[&[u8]] = &[b"http/1.1"];
    let discord = TlsFront::start(backend(&env.discord.base_url()), &pki, http1).await;
    let llm = TlsFront::start(backend(&env.llm.base_url()), &pki, http1).await;
    env.write("tip.toml", TIP);
    config_with(&env, &discord.url(), &llm.url());
    let ca = pki.write_ca(&env, "ca.pem");
    let mut child = serve(&env, &ca);
    wait_until(&env, "a post in the channel", || {
        !env.discord.messages_in(CHANNEL).is_empty()
    })
    .await;
    child.kill().await.unwrap();
    assert!(env.llm.request_count() >= 3, "three acts, three LLM calls");
    assert!(!stderr_of(&env).contains(UNKNOWN_ISSUER));
}

/// Without the CA in the trust store (`SSL_CERT_FILE` names another CA), the LLM call fails
/// with rustls' unknown-issuer error, and the run with it.
#[tokio::test]
async fn llm_call_fails_with_unknown_issuer_without_the_ca() {
    let env = TestEnv::new().await;
    let pki = Pki::new("untrusted");
    let llm = TlsFront::start(backend(&env.llm.base_url()), &pki, &[b"http/1.1"]).await;
    env.write("tip.toml", TIP);
    config_with(&env, &env.discord.base_url(), &llm.url());
    let other = Pki::new("other").write_ca(&env, "other-ca.pem");
    let mut child = serve(&env, &other);
    wait_until(&env, "a failed run", || {
        stderr_of(&env).contains("run failed")
    })
    .await;
    child.kill().await.unwrap();
    assert_logged(&env, "run failed", "provider `gemini` cannot be reached");
    assert_eq!(env.llm.request_count(), 0);
    assert!(env.discord.messages().is_empty());
}

/// Without the CA in the trust store, the Discord delivery (the LLM reached over plain HTTP)
/// fails with rustls' unknown-issuer error; nothing reaches the channel.
#[tokio::test]
async fn discord_delivery_fails_with_unknown_issuer_without_the_ca() {
    let env = TestEnv::new().await;
    let pki = Pki::new("untrusted");
    let discord = TlsFront::start(backend(&env.discord.base_url()), &pki, &[b"http/1.1"]).await;
    env.write("tip.toml", TIP);
    config_with(&env, &discord.url(), &env.llm.base_url());
    let other = Pki::new("other").write_ca(&env, "other-ca.pem");
    let mut child = serve(&env, &other);
    wait_until(&env, "a delivery error", || {
        stderr_of(&env).contains("Discord cannot be reached")
    })
    .await;
    child.kill().await.unwrap();
    assert_logged(
        &env,
        "discord send will be retried",
        "Discord cannot be reached",
    );
    assert!(env.llm.request_count() >= 3, "the narrative ran");
    assert!(env.discord.messages().is_empty());
}
