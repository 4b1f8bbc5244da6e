//! Peers by URL: [`dial`] reaches a peer and [`listen`] serves one on the
//! transport the URL's scheme names: `https://host:port` (HTTP/2 over TLS
//! on TCP; a bare `host:port` means the same) or `quic://host:port` (QUIC
//! on UDP, feature `quic`). Both ends use the same certificate, the same
//! Ed25519 peers and the same limits, so a server can listen on both at
//! one port number (TCP and UDP are separate ports).

use crate::http::{CertificateDer, HttpError, HttpOptions, HttpServer, HttpTransport, PrivateKeyDer, Service};
#[cfg(feature = "quic")]
use crate::quic::{QuicServer, QuicTransport};
use crate::transport::Transport;

/// A transport a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `https://`: HTTP/2 over TLS.
    Https,
    /// `quic://`: QUIC.
    #[cfg(feature = "quic")]
    Quic,
}

/// The transport and the `host:port` a peer's URL names.
pub fn parse(url: &str) -> Result<(Scheme, &str), HttpError> {
    let (scheme, rest) = match url.split_once("://") {
        None => (Scheme::Https, url),
        Some(("https", rest)) => (Scheme::Https, rest),
        #[cfg(feature = "quic")]
        Some(("quic", rest)) => (Scheme::Quic, rest),
        Some(_) => return Err(HttpError::Scheme(url.to_string())),
    };
    let address = rest.strip_suffix('/').unwrap_or(rest);
    if address.is_empty() || address.contains('/') {
        return Err(HttpError::Scheme(url.to_string()));
    }
    Ok((scheme, address))
}

/// A transport to the peer at `url`, trusting these root certificates
/// for the server named `server_name`.
///
/// ```
/// use diffsync_peer::socket::dial;
/// use diffsync_peer::http::{HttpError, HttpOptions};
///
/// // Nothing is sent until the first call.
/// assert!(dial("quic://127.0.0.1:7443", "localhost", &[], HttpOptions::default()).is_ok());
/// assert!(dial("https://127.0.0.1:7443", "localhost", &[], HttpOptions::default()).is_ok());
/// let err = dial("ftp://127.0.0.1:21", "localhost", &[], HttpOptions::default()).err().unwrap();
/// assert!(matches!(err, HttpError::Scheme(_)));
/// ```
pub fn dial(
    url: &str,
    server_name: &str,
    roots: &[CertificateDer<'static>],
    options: HttpOptions,
) -> Result<Box<dyn Transport + Send>, HttpError> {
    Ok(match parse(url)? {
        (Scheme::Https, address) => Box::new(HttpTransport::new(address, server_name, roots, options)?),
        #[cfg(feature = "quic")]
        (Scheme::Quic, address) => Box::new(QuicTransport::new(address, server_name, roots, options)?),
    })
}

/// A server on a socket, of the transport its URL named. Stops when
/// dropped.
pub enum Listener {
    /// HTTP/2 over TLS.
    Https(HttpServer),
    /// QUIC.
    #[cfg(feature = "quic")]
    Quic(QuicServer),
}

impl Listener {
    /// The address it listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        match self {
            Listener::Https(s) => s.address(),
            #[cfg(feature = "quic")]
            Listener::Quic(s) => s.address(),
        }
    }

    /// Its URL: the scheme and the address it listens on.
    pub fn url(&self) -> String {
        match self {
            Listener::Https(s) => format!("https://{}", s.address()),
            #[cfg(feature = "quic")]
            Listener::Quic(s) => format!("quic://{}", s.address()),
        }
    }
}

/// Serves `service` at `url` (port 0: any free port) with this
/// certificate chain and private key (DER).
pub fn listen<S: Service>(
    url: &str,
    service: S,
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Listener, HttpError> {
    Ok(match parse(url)? {
        (Scheme::Https, address) => Listener::Https(HttpServer::start(service, address, certificates, key)?),
        #[cfg(feature = "quic")]
        (Scheme::Quic, address) => Listener::Quic(QuicServer::start(service, address, certificates, key)?),
    })
}
