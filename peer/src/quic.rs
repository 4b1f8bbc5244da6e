//! The protocol over QUIC (quinn): [`QuicServer`] serves a transport on a
//! UDP socket, [`QuicTransport`] reaches one.
//!
//! Every frame is one bidirectional stream: the request written and
//! finished by the client, the response by the server. TLS is the same as
//! HTTP's (rustls, TLS 1.3 with ring, ALPN `diffsync/1`), and so are the
//! peers' Ed25519 proofs inside the protocol, the limits on what a
//! stranger can make the server hold, and [`HttpOptions`]. QUIC brings one
//! handshake round trip less than TCP + TLS, no head-of-line blocking
//! between a connection's requests, and connections that survive an
//! address change. A client address the server has not seen answer is
//! sent a retry first (QUIC's address validation), so a forged source
//! address gets nothing amplified.
//!
//! A refused request is a stream reset with a code: [`TOO_LARGE`],
//! [`TOO_SLOW`] or [`UNANSWERED`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use diffsync::BoxError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use tokio::runtime::Runtime;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::http::{
    CONNECTIONS, CertificateDer, HttpError, HttpOptions, Intake, PrivateKeyDer, SLOW, STREAMS, Service, Tasks,
    answer_limit, client_tls, dial, once_more, runtime, server_tls,
};
use crate::transport::Transport;

/// The protocol's name in the TLS handshake.
pub const ALPN: &[u8] = b"diffsync/1";

/// The code of a stream reset: the request was larger than the server
/// admits (a handshake's worth before the sender proved its key).
pub const TOO_LARGE: u32 = 1;
/// The code of a stream reset: the request did not arrive in time.
pub const TOO_SLOW: u32 = 2;
/// The code of a stream reset: the service could not answer (a relay's
/// own transport failed).
pub const UNANSWERED: u32 = 3;

/// The transport settings both ends use: streams only the client opens,
/// windows that bound what one connection can make the server buffer
/// (with [`CONNECTIONS`], 256 × 1 MiB), idle connections closed.
fn transport_config(server: bool) -> Arc<TransportConfig> {
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(if server { STREAMS } else { 0 }))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(256 << 10))
        .receive_window(VarInt::from_u32(1 << 20))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32((SLOW * 3).as_millis() as u32))))
        .keep_alive_interval((!server).then_some(SLOW));
    Arc::new(config)
}

fn quic_tls(e: impl std::fmt::Display) -> HttpError {
    HttpError::Tls(rustls::Error::General(format!("QUIC cannot use this TLS setup: {e}")))
}

/// The socket address `address` (`host:port`) names, looked up on `rt`.
fn resolve(rt: &Runtime, address: &str) -> std::io::Result<SocketAddr> {
    rt.block_on(tokio::net::lookup_host(address))?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{address} has no address")))
}

/// A transport served on a UDP socket over QUIC, on a thread of its own.
/// Stops when dropped.
pub struct QuicServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl QuicServer {
    /// Serves `service` on `address` (port 0: any free port) with this
    /// certificate chain and private key (DER), as
    /// [`HttpServer::start`](crate::http::HttpServer::start) does on TCP.
    pub fn start<S: Service>(
        service: S,
        address: &str,
        certificates: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<QuicServer, HttpError> {
        let crypto = QuicServerConfig::try_from(server_tls(certificates, key, ALPN)?).map_err(quic_tls)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport_config(true));
        let rt = runtime(address)?;
        let io = |source| HttpError::Io {
            address: address.to_string(),
            source,
        };
        let endpoint = {
            let at = resolve(&rt, address).map_err(io)?;
            let _entered = rt.enter();
            Endpoint::server(config, at).map_err(io)?
        };
        let bound = endpoint.local_addr().map_err(io)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("diffsync-peer quic {bound}"))
            .spawn(move || rt.block_on(serve(endpoint, service, stopped)))
            .map_err(io)?;
        Ok(QuicServer {
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

impl Drop for QuicServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve<S: Service>(endpoint: Endpoint, service: S, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let connections = Tasks::default();
    let room = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let incoming = tokio::select! {
            _ = &mut stopped => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        // An address that has not answered a retry could be forged: it
        // gets a retry token, not a handshake.
        if !incoming.remote_address_validated() {
            if let Err(e) = incoming.retry() {
                tracing::debug!(error = %e, "retry failed");
            }
            continue;
        }
        let Ok(permit) = Arc::clone(&room).try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let service = service.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = match tokio::time::timeout(SLOW, incoming).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("QUIC handshake timed out");
                    return;
                }
            };
            let requests = Tasks::default();
            loop {
                match connection.accept_bi().await {
                    Ok((send, recv)) => requests.spawn(answer(service.clone(), send, recv)),
                    Err(e) => {
                        tracing::debug!(error = %e, "connection ended");
                        break;
                    }
                }
            }
            requests.abort_all();
        });
    }
    // Clients learn at once that the server went (rather than when their
    // next request times out).
    endpoint.close(VarInt::from_u32(0), b"stopped");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    connections.abort_all();
}

async fn answer<S: Service>(mut service: S, mut send: SendStream, mut recv: RecvStream) {
    let read = async {
        let mut intake = Intake::default();
        loop {
            match recv.read_chunk(16 << 10, true).await {
                Ok(Some(chunk)) if !intake.take(&chunk.bytes, &service) => return Err(TOO_LARGE),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(intake.body),
                Err(_) => return Err(UNANSWERED),
            }
        }
    };
    let refuse = |send: &mut SendStream, recv: &mut RecvStream, code: u32| {
        let _ = recv.stop(VarInt::from_u32(code));
        let _ = send.reset(VarInt::from_u32(code));
    };
    let body = match tokio::time::timeout(SLOW, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(code)) => return refuse(&mut send, &mut recv, code),
        Err(_) => return refuse(&mut send, &mut recv, TOO_SLOW),
    };
    match tokio::task::spawn_blocking(move || service.call(&body)).await {
        Ok(Ok(frame)) => {
            if send.write_all(&frame).await.is_ok() {
                let _ = send.finish();
                // The stream's data is delivered before the task ends.
                let _ = send.stopped().await;
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %diffsync::Chain(&*e), "a request went unanswered");
            refuse(&mut send, &mut recv, UNANSWERED);
        }
        Err(_) => refuse(&mut send, &mut recv, UNANSWERED),
    }
}

/// A transport to a [`QuicServer`]: one QUIC connection, reused, made
/// again after a failure; each frame on a stream of its own.
pub struct QuicTransport {
    address: String,
    name: String,
    config: quinn::ClientConfig,
    options: HttpOptions,
    rt: Runtime,
    endpoint: Option<Endpoint>,
    connection: Option<Connection>,
}

impl QuicTransport {
    /// A transport to `address` (`host:port`), trusting these root
    /// certificates for the server named `server_name`.
    pub fn new(
        address: impl Into<String>,
        server_name: &str,
        roots: &[CertificateDer<'static>],
        options: HttpOptions,
    ) -> Result<QuicTransport, HttpError> {
        let address = address.into();
        ServerName::try_from(server_name.to_string()).map_err(|_| HttpError::Name(server_name.into()))?;
        let tls = QuicClientConfig::try_from(client_tls(roots, ALPN)?).map_err(quic_tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(tls));
        config.transport_config(transport_config(false));
        Ok(QuicTransport {
            rt: runtime(&address)?,
            address,
            name: server_name.to_string(),
            config,
            options,
            endpoint: None,
            connection: None,
        })
    }

    /// A connection, the open one or a new one (retried with backoff).
    fn connection(&mut self) -> Result<Connection, BoxError> {
        if let Some(c) = &self.connection
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let at = resolve(&self.rt, &self.address)?;
        let endpoint = match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => {
                let any: SocketAddr = if at.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let _entered = self.rt.enter();
                let endpoint = Endpoint::client(any)?;
                self.endpoint = Some(endpoint.clone());
                endpoint
            }
        };
        let (config, name) = (self.config.clone(), self.name.clone());
        let connection = dial(&self.rt, &self.options, &self.address, || {
            let connecting = endpoint.connect_with(config.clone(), at, &name);
            async move { Ok(connecting?.await?) }
        })?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// One exchange on a stream of the connection at hand.
    fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, BoxError> {
        let limit = answer_limit(frame);
        let connection = self.connection()?;
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await?;
            match send.write_all(frame).await {
                Err(quinn::WriteError::Stopped(code)) => return Err(refused(code)),
                written => written?,
            }
            send.finish()?;
            match recv.read_to_end(limit).await {
                Ok(answer) => Ok(answer),
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Err(refused(code)),
                Err(e) => Err(BoxError::from(e)),
            }
        };
        let timeout = self.options.timeout;
        let result = match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
        {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from {} within {timeout:?}", self.address).into()),
        };
        // A connection that failed an exchange is not trusted with the
        // next (a server that died without closing it leaves it silent).
        if result.is_err() {
            connection.close(VarInt::from_u32(0), b"failed");
            self.connection = None;
        }
        result
    }
}

/// What a stream reset by the server says.
fn refused(code: VarInt) -> BoxError {
    let why = match u32::try_from(code.into_inner()) {
        Ok(TOO_LARGE) => "the request is larger than the peer admits",
        Ok(TOO_SLOW) => "the request did not reach the peer in time",
        Ok(UNANSWERED) => "the peer could not answer",
        _ => "the peer reset the stream",
    };
    format!("{why} (QUIC stream reset, code {code})").into()
}

impl Transport for QuicTransport {
    /// Sends a frame on a new stream; when a connection kept from before
    /// fails, once more on a new one (a frame the peer did receive is
    /// answered at most once: see [`HttpTransport`](crate::http::HttpTransport)).
    fn call(&mut self, frame: &[u8]) -> Result<Vec<u8>, BoxError> {
        let reused = self.connection.as_ref().is_some_and(|c| c.close_reason().is_none());
        once_more(reused, frame, |frame| self.exchange(frame))
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.close(VarInt::from_u32(0), b"done");
        }
        // The close reaches the server before the runtime goes.
        if let Some(endpoint) = self.endpoint.take() {
            let idle = async { tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await };
            let _ = self.rt.block_on(idle);
        }
    }
}
