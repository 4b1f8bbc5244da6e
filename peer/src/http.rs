//! The protocol over HTTP/2 with TLS: [`HttpServer`] serves a
//! [`Server`](crate::Server) on a socket, [`HttpTransport`] reaches one.
//!
//! Every frame is the body of a `POST /diffsync/1` and its response's
//! body. TLS is rustls (TLS 1.3, ALPN `h2`) with ring; peers prove who they
//! are with their Ed25519 keys inside the protocol, so the certificate only
//! has to be one the client trusts for the server's name. Each side runs
//! its own tokio runtime, so the caller's code stays synchronous and the
//! core never sees async.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use diffsync::BoxError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::proto::{HANDSHAKE_MAX, HEAD, MAX_ANSWER};
use crate::transport::Transport;

pub use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What a socket server (HTTP, QUIC) serves: a [`Transport`] it can clone
/// for each request and move to a blocking thread. A [`Server`](crate::Server) in an
/// `Arc` is one.
pub trait Service: Transport + Clone + Send + Sync + 'static {}

impl<S: Transport + Clone + Send + Sync + 'static> Service for S {}

/// The path frames are posted to.
pub const PATH: &str = "/diffsync/1";

/// What can go wrong setting up TLS or a socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The certificate or key cannot be used.
    #[error("TLS setup failed")]
    Tls(#[source] rustls::Error),
    /// The socket cannot be bound or the runtime started.
    #[error("cannot listen on {address}")]
    Io {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server name is not a valid DNS name or IP address.
    #[error("{0:?} is not a server name")]
    Name(String),
    /// A peer's URL names no transport this build has (`https://`,
    /// `quic://`), or no `host:port`.
    #[error("{0:?} is not a peer URL (https://HOST:PORT or quic://HOST:PORT)")]
    Scheme(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's TLS 1.3 setup (ring) with this certificate chain, key and
/// protocol name (ALPN).
pub(crate) fn server_tls(
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<ServerConfig, HttpError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(HttpError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(HttpError::Tls)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A client's TLS 1.3 setup (ring) trusting these roots, for this
/// protocol name (ALPN).
pub(crate) fn client_tls(roots: &[CertificateDer<'static>], alpn: &[u8]) -> Result<ClientConfig, HttpError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(HttpError::Tls)?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(HttpError::Tls)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

pub(crate) fn runtime(address: &str) -> Result<Runtime, HttpError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| HttpError::Io {
            address: address.to_string(),
            source,
        })
}

/// A [`Server`](crate::Server) on a TCP socket, HTTP/2 over TLS, on a thread of its own.
/// Stops when dropped.
pub struct HttpServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `service` on `address` (port 0: any free port) with this
    /// certificate chain and private key (DER): a [`Server`](crate::Server) in an `Arc`,
    /// one wrapped in a layer ([`Counted`](crate::Counted)), or any
    /// transport (a relay to another machine). Each request is answered by
    /// a clone of it.
    pub fn start<S: Service>(
        service: S,
        address: &str,
        certificates: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<HttpServer, HttpError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_tls(certificates, key, b"h2")?));
        let rt = runtime(address)?;
        let io = |source| HttpError::Io {
            address: address.to_string(),
            source,
        };
        let listener = rt.block_on(TcpListener::bind(address)).map_err(io)?;
        let bound = listener.local_addr().map_err(io)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("diffsync-peer {bound}"))
            .spawn(move || rt.block_on(serve(listener, acceptor, service, stopped)))
            .map_err(io)?;
        Ok(HttpServer {
            address: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connections served at once; more wait in the listen queue. With
/// [`STREAMS`] and [`HANDSHAKE_MAX`], what strangers can make the server
/// hold before any of them proves a key: 256 × 8 × 16 KiB = 32 MiB.
pub(crate) const CONNECTIONS: usize = 256;
/// Requests one connection may have open at once.
pub(crate) const STREAMS: u32 = 8;
/// How long a client may take to finish its TLS handshake, and to send
/// one request's body.
pub(crate) const SLOW: Duration = Duration::from_secs(20);

async fn serve<S: Service>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server: S,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let connections = Tasks::default();
    let room = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&room).acquire_owned().await else {
            break;
        };
        let (tcp, _) = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, server) = (acceptor.clone(), server.clone());
        connections.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(SLOW, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| answer(server.clone(), request));
            if let Err(e) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(STREAMS)
                .max_header_list_size(16 << 10)
                .initial_stream_window_size(256 << 10)
                .initial_connection_window_size(1 << 20)
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    connections.abort_all();
}

/// The server's connections, aborted when it stops.
#[derive(Default)]
pub(crate) struct Tasks(std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Tasks {
    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(f));
    }

    pub(crate) fn abort_all(&self) {
        for t in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

/// A request's body as it arrives: no larger than a handshake until its
/// head shows a call of an open session ([`Transport::admits`]).
#[derive(Default)]
pub(crate) struct Intake {
    pub(crate) body: Vec<u8>,
    limit: Option<usize>,
}

impl Intake {
    /// Takes the next piece; false when the body is now over its limit
    /// (the rest is not to be read).
    pub(crate) fn take(&mut self, data: &[u8], service: &impl Transport) -> bool {
        self.body.extend_from_slice(data);
        if self.limit.is_none() && self.body.len() >= HEAD {
            self.limit = Some(service.admits(&self.body));
        }
        self.body.len() <= self.limit.unwrap_or(HANDSHAKE_MAX)
    }
}

async fn answer<S: Service>(
    mut server: S,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        Ok(r)
    };
    if request.method() != Method::POST || request.uri().path() != PATH {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    // The head of the request says whether it belongs to an open session;
    // anything else may not be larger than a handshake.
    let mut incoming = request.into_body();
    let read = async {
        let mut intake = Intake::default();
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else {
                return Err(StatusCode::BAD_REQUEST);
            };
            // A data frame is at most 16 KiB (HTTP/2's default frame size).
            if let Ok(data) = frame.into_data()
                && !intake.take(&data, &server)
            {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        Ok(intake.body)
    };
    let body = match tokio::time::timeout(SLOW, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(status)) => return reply(status, Vec::new()),
        Err(_) => return reply(StatusCode::REQUEST_TIMEOUT, Vec::new()),
    };
    match tokio::task::spawn_blocking(move || server.call(&body)).await {
        Ok(Ok(frame)) => reply(StatusCode::OK, frame),
        Ok(Err(e)) => {
            tracing::warn!(error = %diffsync::Chain(&*e), "a request went unanswered");
            reply(StatusCode::BAD_GATEWAY, Vec::new())
        }
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// How [`HttpTransport`] behaves.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// How long one exchange may take (connecting included).
    pub timeout: Duration,
    /// Connection attempts for one exchange (with jittered exponential
    /// backoff between them); a request is never sent twice.
    pub connect_attempts: usize,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(30),
            connect_attempts: 4,
        }
    }
}

/// A transport to an [`HttpServer`]: one HTTP/2 connection, reused, made
/// again after a failure.
pub struct HttpTransport {
    address: String,
    name: ServerName<'static>,
    connector: TlsConnector,
    options: HttpOptions,
    rt: Runtime,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpTransport {
    /// A transport to `address` (`host:port`), trusting these root
    /// certificates for the server named `server_name`.
    pub fn new(
        address: impl Into<String>,
        server_name: &str,
        roots: &[CertificateDer<'static>],
        options: HttpOptions,
    ) -> Result<HttpTransport, HttpError> {
        let address = address.into();
        let config = client_tls(roots, b"h2")?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| HttpError::Name(server_name.into()))?;
        Ok(HttpTransport {
            rt: runtime(&address)?,
            address,
            name,
            connector: TlsConnector::from(Arc::new(config)),
            options,
            sender: None,
        })
    }

    /// A connection, the open one or a new one (retried with backoff).
    fn connection(&mut self) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        if let Some(s) = &self.sender
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let (address, name, connector) = (self.address.clone(), self.name.clone(), self.connector.clone());
        let sender = dial(&self.rt, &self.options, &address, || {
            connect(&address, name.clone(), connector.clone())
        })?;
        self.sender = Some(sender.clone());
        Ok(sender)
    }
}

/// Connects with `attempt`, each try within the options' timeout, again
/// with jittered exponential backoff until the options' attempts are
/// spent.
pub(crate) fn dial<C, F: Future<Output = Result<C, BoxError>>>(
    rt: &Runtime,
    options: &HttpOptions,
    address: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<C, BoxError> {
    let mut waits = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(options.connect_attempts.saturating_sub(1))
        .build();
    loop {
        let error: BoxError = match rt.block_on(async { tokio::time::timeout(options.timeout, attempt()).await }) {
            Ok(Ok(connected)) => return Ok(connected),
            Ok(Err(e)) => e,
            Err(_) => format!("connecting to {address} timed out").into(),
        };
        match waits.next() {
            Some(wait) => {
                tracing::debug!(%address, error = %error, ?wait, "connect failed; retrying");
                std::thread::sleep(wait);
            }
            None => return Err(error),
        }
    }
}

/// How large an answer to `frame` a client reads: until the server has
/// proven its key (a hello's, an auth's answer), no more than a
/// handshake's worth.
pub(crate) fn answer_limit(frame: &[u8]) -> usize {
    match crate::proto::sealed_session(&frame[..frame.len().min(HEAD)]) {
        Some(_) => MAX_ANSWER + 4096,
        None => HANDSHAKE_MAX,
    }
}

async fn connect(
    address: &str,
    name: ServerName<'static>,
    connector: TlsConnector,
) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name, tcp).await?;
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "peer connection ended");
        }
    });
    Ok(sender)
}

impl HttpTransport {
    /// One exchange over the connection at hand.
    fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, BoxError> {
        let limit = answer_limit(frame);
        let mut sender = self.connection()?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{}{PATH}", self.address))
            .body(Full::new(Bytes::copy_from_slice(frame)))?;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| -> BoxError { e })?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(format!("the peer answered HTTP {status}").into());
            }
            Ok::<_, BoxError>(body.to_vec())
        };
        let timeout = self.options.timeout;
        match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
        {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no answer from {} within {:?}", self.address, self.options.timeout).into())
            }
        }
    }
}

impl Transport for HttpTransport {
    /// Sends a frame; when a connection kept from before fails (the peer
    /// restarted, an idle connection was cut), once more on a new one. A
    /// frame the peer did receive is answered at most once anyway: a call
    /// is numbered (a copy is refused as a replay) and a push carries its
    /// batch id.
    fn call(&mut self, frame: &[u8]) -> Result<Vec<u8>, BoxError> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        once_more(reused, frame, |frame| self.exchange(frame))
    }
}

/// An exchange on a connection kept from before that fails (the peer
/// restarted, an idle connection was cut) is tried once more, on a new one.
pub(crate) fn once_more(
    reused: bool,
    frame: &[u8],
    mut exchange: impl FnMut(&[u8]) -> Result<Vec<u8>, BoxError>,
) -> Result<Vec<u8>, BoxError> {
    match exchange(frame) {
        Err(e) if reused => {
            tracing::debug!(error = %e, "a kept connection failed; one more try on a new one");
            exchange(frame)
        }
        result => result,
    }
}
