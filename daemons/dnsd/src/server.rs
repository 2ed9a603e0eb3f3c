//! The DNS server: hickory-server's UDP and TCP transport with a request
//! handler of our own over the live [`ZoneView`].
//!
//! It answers standard queries for the served zones and nothing else: no
//! recursion (RA is never set), no forwarding, no dynamic update, no zone
//! transfer. A name outside every zone is REFUSED.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::answer::Outcome;
use crate::engine::ZoneView;

/// Idle time after which a TCP connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses buffered per TCP connection.
const TCP_BUFFER: usize = 64;
/// Our EDNS version.
const EDNS_VERSION: u8 = 0;
/// The largest UDP payload we advertise, whatever a client offers: 1232
/// bytes fits the IPv6 minimum MTU without fragmentation (DNS flag day 2020)
/// and bounds what a spoofed query can reflect.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The smallest UDP payload EDNS allows (RFC 6891).
const MIN_UDP_PAYLOAD: u16 = 512;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// The request handler: answers from the current snapshot.
#[derive(Debug, Clone)]
pub struct ZoneHandler {
    view: ZoneView,
}

impl ZoneHandler {
    /// A handler reading from `view`.
    pub fn new(view: ZoneView) -> Self {
        ZoneHandler { view }
    }
}

async fn send<'q, 'a, R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    response: MessageResponse<
        'q,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, src = %request.src(), "failed to send a response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

async fn error_response<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    edns: Option<&Edns>,
    handle: R,
) -> ResponseInfo {
    let mut with_high: Edns;
    let mut edns = edns;
    if code.high() != 0 {
        if let Some(e) = edns {
            with_high = e.clone();
            with_high.set_rcode_high(code.high());
            edns = Some(&with_high);
        }
    }
    let response =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, code);
    send(request, handle, response).await
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        let mut resp_edns;
        let edns = match request.edns.as_ref() {
            Some(req) => {
                resp_edns = Edns::new();
                resp_edns
                    .set_max_payload(req.max_payload().clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD));
                resp_edns.set_version(EDNS_VERSION);
                if req.version() > EDNS_VERSION {
                    return error_response(
                        request,
                        ResponseCode::BADVERS,
                        Some(&resp_edns),
                        handle,
                    )
                    .await;
                }
                Some(&resp_edns)
            }
            None => None,
        };
        if request.metadata.message_type != MessageType::Query {
            return error_response(request, ResponseCode::FormErr, edns, handle).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return error_response(request, ResponseCode::NotImp, edns, handle).await;
        }
        let query = match request.queries.queries() {
            [q] => q,
            _ => return error_response(request, ResponseCode::FormErr, edns, handle).await,
        };
        if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
            return error_response(request, ResponseCode::Refused, edns, handle).await;
        }
        if matches!(
            query.query_type(),
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        ) {
            return error_response(request, ResponseCode::Refused, edns, handle).await;
        }
        let snapshot = self.view.current();
        match snapshot.answer(query.name(), query.query_type()) {
            Outcome::Refused => error_response(request, ResponseCode::Refused, edns, handle).await,
            Outcome::Authoritative {
                nxdomain,
                answers,
                authorities,
                additionals,
            } => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.recursion_available = false;
                metadata.response_code = if nxdomain {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let response = MessageResponseBuilder::new(&request.queries, edns).build(
                    metadata,
                    answers.iter(),
                    std::iter::empty(),
                    authorities.iter(),
                    additionals.iter(),
                );
                send(request, handle, response).await
            }
        }
    }
}

/// A running DNS server. Dropping it stops it.
pub struct DnsServer {
    server: Server<ZoneHandler>,
    addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on each of `listen` and starts serving `view`.
    /// A port of 0 picks a free port, the same for UDP and TCP.
    pub async fn start(listen: &[SocketAddr], view: ZoneView) -> Result<DnsServer, ServerError> {
        let mut server = Server::new(ZoneHandler::new(view));
        let mut addrs = Vec::new();
        for &addr in listen {
            let (udp, tcp) = bind_pair(addr).await?;
            let local = udp.local_addr().map_err(|source| ServerError::Bind {
                addr,
                proto: "udp",
                source,
            })?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_TIMEOUT, TCP_BUFFER);
            tracing::info!(%local, "serving DNS over UDP and TCP");
            addrs.push(local);
        }
        Ok(DnsServer { server, addrs })
    }

    /// The bound addresses (UDP and TCP share each), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Serves until the sockets fail or [`shutdown`](Self::shutdown) is called.
    pub async fn run(mut self) {
        if let Err(error) = self.server.block_until_done().await {
            tracing::error!(%error, "DNS server stopped");
        }
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(%error, "DNS server shutdown");
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let udp_err = |source| ServerError::Bind {
        addr,
        proto: "udp",
        source,
    };
    let tcp_err = |source| ServerError::Bind {
        addr,
        proto: "tcp",
        source,
    };
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let tcp = TcpListener::bind(addr).await.map_err(tcp_err)?;
        return Ok((udp, tcp));
    }
    // An ephemeral port: take one for UDP, then the same for TCP; retry when
    // TCP's is already in use.
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let local = udp.local_addr().map_err(udp_err)?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(tcp_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both UDP and TCP")
    })))
}
