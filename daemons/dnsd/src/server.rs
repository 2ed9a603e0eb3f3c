//! The DNS server over the live [`ZoneView`]: a request handler of our own,
//! TCP through hickory-server's transport, UDP through our own sockets.
//!
//! It answers standard queries for the served zones and nothing else: no
//! recursion (RA is never set), no forwarding, no dynamic update, no zone
//! transfer. A name outside every zone is REFUSED.
//!
//! UDP: each listen address gets one socket per core (`SO_REUSEPORT`, the
//! kernel spreads clients over them), each served by a thread of its own
//! that answers a datagram from the fast path's tables ([`crate::fast`])
//! when it can and through hickory's decoder and encoder
//! ([`answer_udp`]) otherwise. Each datagram is answered from the snapshot
//! current when it is read, so a change is visible to the next query.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{
    MessageRequest, MessageResponse, MessageResponseBuilder, Queries,
};
use hickory_server::Server;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::net::TcpListener;

use crate::answer::{Outcome, Snapshot};
use crate::engine::ZoneView;
use crate::fast::MAX_ANSWER;

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

/// What the handler answers to one decoded request: the response header,
/// its OPT record and its sections. The UDP path, the TCP path (through
/// hickory) and the fast path's tables are all made from this.
#[derive(Debug)]
pub(crate) struct Reply {
    metadata: Metadata,
    edns: Option<Edns>,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(request: &MessageRequest, code: ResponseCode, edns: Option<Edns>) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        Reply {
            metadata,
            edns,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// The hickory response for `request` (whose question it echoes).
    fn response<'q>(
        &'q self,
        request: &'q MessageRequest,
    ) -> MessageResponse<
        'q,
        'q,
        std::slice::Iter<'q, Record>,
        std::iter::Empty<&'q Record>,
        std::slice::Iter<'q, Record>,
        std::slice::Iter<'q, Record>,
    > {
        MessageResponseBuilder::new(&request.queries, self.edns.as_ref()).build(
            self.metadata,
            self.answers.iter(),
            std::iter::empty(),
            self.authorities.iter(),
            self.additionals.iter(),
        )
    }
}

/// The answer to a decoded request from `snapshot`: authority only, REFUSED
/// outside the zones, errors for what is not a plain query.
pub(crate) fn reply(request: &MessageRequest, snapshot: &Snapshot) -> Reply {
    let edns = match request.edns.as_ref() {
        Some(req) => {
            let mut resp_edns = Edns::new();
            resp_edns.set_max_payload(req.max_payload().clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD));
            resp_edns.set_version(EDNS_VERSION);
            if req.version() > EDNS_VERSION {
                resp_edns.set_rcode_high(ResponseCode::BADVERS.high());
                return Reply::error(request, ResponseCode::BADVERS, Some(resp_edns));
            }
            Some(resp_edns)
        }
        None => None,
    };
    if request.metadata.message_type != MessageType::Query {
        return Reply::error(request, ResponseCode::FormErr, edns);
    }
    if request.metadata.op_code != OpCode::Query {
        return Reply::error(request, ResponseCode::NotImp, edns);
    }
    let query = match request.queries.queries() {
        [q] => q,
        _ => return Reply::error(request, ResponseCode::FormErr, edns),
    };
    if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
        return Reply::error(request, ResponseCode::Refused, edns);
    }
    if matches!(
        query.query_type(),
        RecordType::AXFR | RecordType::IXFR | RecordType::OPT
    ) {
        return Reply::error(request, ResponseCode::Refused, edns);
    }
    match snapshot.answer(query.name(), query.query_type()) {
        Outcome::Refused => Reply::error(request, ResponseCode::Refused, edns),
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
            Reply {
                metadata,
                edns,
                answers,
                authorities,
                additionals,
            }
        }
    }
}

/// Encodes a response the way hickory's server does for `protocol`: UDP
/// answers are sized by the OPT record we send (512 bytes without one) and
/// truncated (TC) beyond it; an answer that cannot be encoded becomes a bare
/// SERVFAIL.
fn encode<'q>(
    response: MessageResponse<
        'q,
        'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
    >,
    udp: bool,
) -> Vec<u8> {
    let id = response.metadata().id;
    let max = match (udp, response.edns()) {
        (true, Some(edns)) => edns.max_payload(),
        (true, None) => MIN_UDP_PAYLOAD,
        (false, _) => u16::MAX,
    };
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    if response.destructive_emit(&mut encoder).is_ok() {
        return bytes;
    }
    tracing::error!(id, "cannot encode a response; answering SERVFAIL");
    bytes.clear();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(MIN_UDP_PAYLOAD);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    match header.emit(&mut encoder) {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}

/// The general answer to one UDP datagram, through hickory's decoder and
/// encoder: what hickory's own UDP server would send (nothing for what it
/// drops: less than a header, or a response). The fast path
/// ([`crate::fast`]) answers the common queries byte-for-byte the same and
/// leaves everything else to this.
pub fn answer_udp(snapshot: &Snapshot, datagram: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = BinDecoder::new(datagram);
    let header = Header::read(&mut decoder).ok()?;
    let src = SocketAddr::from(([127, 0, 0, 1], 53));
    let request = match Request::from_bytes(datagram.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(error) => {
            tracing::debug!(id = header.id, %error, "undecodable query: FORMERR");
            let empty = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let response = MessageResponseBuilder::new(&empty, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            return Some(encode(response, true));
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let reply = reply(&request, snapshot);
    Some(encode(reply.response(&request), true))
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let snapshot = self.view.current();
        let reply = reply(request, &snapshot);
        match handle.send_response(reply.response(request)).await {
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
}

/// How often an idle UDP thread looks whether it should stop.
const UDP_POLL: Duration = Duration::from_millis(100);
/// hickory's receive buffer: larger datagrams are cut there, as before.
const UDP_RECEIVE: usize = 4096;
/// Datagrams read (and answers sent) per system call at most.
const UDP_BATCH: usize = 32;
/// The pause after an unexpected receive error.
const UDP_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The UDP threads of one server.
#[derive(Debug, Default)]
struct UdpThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpThreads {
    /// Tells every thread to stop and returns their handles.
    fn stop(&mut self) -> Vec<JoinHandle<()>> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
    }
}

impl Drop for UdpThreads {
    fn drop(&mut self) {
        // They notice within UDP_POLL and close their sockets.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A running DNS server. Dropping it stops it.
pub struct DnsServer {
    server: Server<ZoneHandler>,
    udp: UdpThreads,
    addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addrs", &self.addrs)
            .field("udp_threads", &self.udp.threads.len())
            .finish()
    }
}

/// UDP sockets per listen address: one per core, at most 4.
fn udp_sockets_per_address() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

impl DnsServer {
    /// Binds UDP and TCP on each of `listen` and starts serving `view`.
    /// A port of 0 picks a free port, the same for UDP and TCP.
    pub async fn start(listen: &[SocketAddr], view: ZoneView) -> Result<DnsServer, ServerError> {
        let mut server = Server::new(ZoneHandler::new(view.clone()));
        let mut udp = UdpThreads::default();
        let mut addrs = Vec::new();
        let per_address = udp_sockets_per_address();
        for &addr in listen {
            let (sockets, tcp) = bind_all(addr, per_address)?;
            let local = tcp.local_addr().map_err(|source| ServerError::Bind {
                addr,
                proto: "tcp",
                source,
            })?;
            for (i, socket) in sockets.into_iter().enumerate() {
                let view = view.clone();
                let stop = udp.stop.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("dnsd-udp-{i}"))
                    .spawn(move || serve_udp(socket, view, stop))
                    .map_err(|source| ServerError::Bind {
                        addr,
                        proto: "udp",
                        source,
                    })?;
                udp.threads.push(thread);
            }
            server.register_listener(tcp, TCP_TIMEOUT, TCP_BUFFER);
            tracing::info!(%local, udp_sockets = per_address, "serving DNS over UDP and TCP");
            addrs.push(local);
        }
        Ok(DnsServer { server, udp, addrs })
    }

    /// The bound addresses (UDP and TCP share each), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Serves until the TCP listeners fail or [`shutdown`](Self::shutdown)
    /// is called.
    pub async fn run(mut self) {
        if let Err(error) = self.server.block_until_done().await {
            tracing::error!(%error, "DNS server stopped");
        }
    }

    /// Stops serving and waits for the listeners and the UDP sockets to
    /// close.
    pub async fn shutdown(mut self) {
        let threads = self.udp.stop();
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(%error, "DNS server shutdown");
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::warn!("a UDP thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!("waiting for the UDP threads failed");
        }
    }
}

/// Whether a response may be sent to `src` (as hickory checks: not port 0,
/// not an unspecified or broadcast address).
fn answerable(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip() {
            IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
            IpAddr::V6(v6) => !v6.is_unspecified(),
        }
}

/// The std address of a received datagram's source.
fn source(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        addr.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }
}

/// Where one answer of a batch lies.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// None: the datagram is dropped.
    Nothing,
    /// In the fast path's buffer of the same index, this long.
    Fast(usize),
    /// In the general path's answers, at this index.
    General(usize),
}

/// One UDP socket's loop until told to stop: read what is queued (up to
/// [`UDP_BATCH`] datagrams, one `recvmmsg`), answer each from the snapshot
/// current after they were read, send the answers (one `sendmmsg`).
fn serve_udp(socket: std::net::UdpSocket, view: ZoneView, stop: Arc<AtomicBool>) {
    let fd = socket.as_raw_fd();
    let Ok(mut bufs) = <Box<[[u8; UDP_RECEIVE]; UDP_BATCH]>>::try_from(
        vec![[0u8; UDP_RECEIVE]; UDP_BATCH].into_boxed_slice(),
    ) else {
        return;
    };
    let mut outs = vec![[0u8; MAX_ANSWER]; UDP_BATCH];
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut tx = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut received: [(usize, Option<SockaddrStorage>); UDP_BATCH] = [(0, None); UDP_BATCH];
    let mut answers = [Answer::Nothing; UDP_BATCH];
    let mut general: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let count = {
            let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(results) => {
                    let mut count = 0;
                    for (slot, r) in received.iter_mut().zip(results) {
                        *slot = (r.bytes, r.address);
                        count += 1;
                    }
                    count
                }
                // The read timeout (time to look at `stop`) or a signal.
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(error) => {
                    tracing::warn!(%error, "error receiving on a UDP socket");
                    // Not a hot loop if the error persists.
                    std::thread::sleep(UDP_ERROR_PAUSE);
                    continue;
                }
            }
        };
        let snapshot = view.current();
        general.clear();
        for i in 0..count {
            let (len, addr) = received[i];
            answers[i] = Answer::Nothing;
            let Some(src) = addr.as_ref().and_then(source) else {
                continue;
            };
            if !answerable(src) {
                tracing::debug!(%src, "not answering a datagram from this address");
                continue;
            }
            let query = &bufs[i][..len.min(UDP_RECEIVE)];
            answers[i] = match snapshot.fast().answer(query, &mut outs[i]) {
                Some(n) => Answer::Fast(n),
                None => match answer_udp(&snapshot, query) {
                    Some(response) => {
                        general.push(response);
                        Answer::General(general.len() - 1)
                    }
                    None => Answer::Nothing,
                },
            };
        }
        // The answers in order, each with its client.
        let mut slices = [[IoSlice::new(&[])]; UDP_BATCH];
        let mut to: [Option<SockaddrStorage>; UDP_BATCH] = [None; UDP_BATCH];
        let mut n = 0;
        for i in 0..count {
            let bytes: &[u8] = match answers[i] {
                Answer::Nothing => continue,
                Answer::Fast(len) => &outs[i][..len],
                Answer::General(j) => &general[j],
            };
            slices[n] = [IoSlice::new(bytes)];
            to[n] = received[i].1;
            n += 1;
        }
        let mut done = 0;
        while done < n {
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut tx,
                slices[done..n].iter(),
                &to[done..n],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(sent) => done += sent.count().max(1),
                Err(Errno::EINTR) => {}
                Err(error) => {
                    // The first of the rest failed: skip it.
                    tracing::debug!(%error, "failed to send a response");
                    done += 1;
                }
            }
        }
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, SockFlag, SockType, SockaddrStorage,
    };
    let family = match addr {
        SocketAddr::V4(_) => nix::sys::socket::AddressFamily::Inet,
        SocketAddr::V6(_) => nix::sys::socket::AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    let socket = std::net::UdpSocket::from(fd);
    socket.set_read_timeout(Some(UDP_POLL))?;
    Ok(socket)
}

/// Binds `count` UDP sockets (sharing the port through `SO_REUSEPORT`) and
/// a TCP listener on `addr`. The TCP listener (no `SO_REUSEPORT`) keeps a
/// second server from joining the port: binding fails as before when the
/// address is in use.
fn bind_all(
    addr: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), ServerError> {
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
    let tcp_listener = |a: SocketAddr| {
        let std_listener = std::net::TcpListener::bind(a)?;
        std_listener.set_nonblocking(true)?;
        TcpListener::from_std(std_listener)
    };
    let rest = |first: std::net::UdpSocket, local: SocketAddr| {
        let mut sockets = vec![first];
        for _ in 1..count {
            sockets.push(udp_socket(local).map_err(udp_err)?);
        }
        Ok::<_, ServerError>(sockets)
    };
    if addr.port() != 0 {
        let tcp = tcp_listener(addr).map_err(tcp_err)?;
        // A port in use by UDP alone (without SO_REUSEPORT) fails here.
        let first = udp_socket(addr).map_err(udp_err)?;
        return Ok((rest(first, addr)?, tcp));
    }
    // An ephemeral port: take one for UDP, then the same for TCP; retry when
    // TCP's is already in use.
    let mut last = None;
    for _ in 0..20 {
        let first = udp_socket(addr).map_err(udp_err)?;
        let local = first.local_addr().map_err(udp_err)?;
        match tcp_listener(local) {
            Ok(tcp) => return Ok((rest(first, local)?, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(tcp_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both UDP and TCP")
    })))
}
