//! TLS to the collector: the trust store of the OTLP exporter, for gRPC (tonic) and for
//! HTTP (a reqwest client): the OS trust store plus the certificates of the CA file named by
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`; no roots are bundled in the binary.

use std::time::Duration;

use super::settings::TelemetryConfig;

/// TLS for OTLP/gRPC: the OS trust store when it has certificates (tonic refuses an empty
/// one, and a CA file alone must still work in a container without `ca-certificates`), plus
/// the CA file's certificates.
pub(super) fn grpc_tls(
    ca: Option<&[u8]>,
) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    let mut tls = ClientTlsConfig::new();
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        tls = tls.with_native_roots();
    }
    if let Some(pem) = ca {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    tls
}

/// The blocking reqwest client of the OTLP/HTTP exporter (what `opentelemetry-otlp` builds by
/// default), trusting the CA file's certificates besides the OS trust store. Built on a thread
/// of its own: a blocking client cannot be built on a tokio runtime thread.
pub(super) fn http_client_with_ca(
    config: &TelemetryConfig,
    pem: &[u8],
    get: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<reqwest::blocking::Client> {
    let var = config.ca_file.as_ref().map_or("", |ca| ca.var);
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|err| anyhow::anyhow!("{var}: not a PEM file of certificates: {err}"))?;
    anyhow::ensure!(!certs.is_empty(), "{var}: no certificate in the file");
    // The exporter's timeout, as `opentelemetry-otlp` resolves it (10 s by default).
    let timeout = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|var| get(var)?.trim().parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis);
    std::thread::spawn(move || {
        certs
            .into_iter()
            .fold(
                reqwest::blocking::Client::builder().timeout(timeout),
                reqwest::blocking::ClientBuilder::add_root_certificate,
            )
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread building the OTLP/HTTP client panicked"))?
    .map_err(|err| {
        anyhow::anyhow!(
            "cannot build the OTLP/HTTP client: {}",
            crate::error_chain(&err)
        )
    })
}
