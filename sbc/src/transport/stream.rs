//! One stream connection (TCP or TLS): RFC 3261 §18.3 framing by Content-Length, RFC 5626
//! §3.5.1 CRLF keep-alives, a bounded write queue, and the timeouts that bound what a
//! misbehaving peer can hold (idle connections, slowloris messages).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use sbc_proto::{
    net::Peer,
    sip::{Frame, FrameError, Framer, HeaderName, Limits, Method, Problem},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    time::Instant,
};

use super::{
    DropReason,
    admission::Admission,
    counters::Counters,
    inbound::{Intake, examine},
    reject::rejection,
    settings::StreamLimits,
};

/// Bytes asked of the socket per read; the buffer never grows much past the message limit.
const READ_CHUNK: usize = 16 * 1024;
/// RFC 5626 §3.5.1: the pong answering a CRLFCRLF ping.
const PONG: &[u8] = b"\r\n";
/// How long a closing connection may take to flush (and send TLS close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection needs besides its byte stream.
#[derive(Debug)]
pub(crate) struct StreamCtx {
    /// The peer, with its connection id.
    pub(crate) peer: Peer,
    /// Local address of the connection.
    pub(crate) local: SocketAddr,
    /// Parser limits.
    pub(crate) limits: Limits,
    /// Timeouts.
    pub(crate) stream: StreamLimits,
    /// Metrics of this side and transport.
    pub(crate) counters: Counters,
    /// Toward the SIP core.
    pub(crate) inbound: crate::signaling::Router,
    /// For accepted connections: the time from accept within which a valid SIP message must
    /// arrive (keep-alives do not count). `None` for connections the SBC opened.
    pub(crate) first_message: Option<Duration>,
    /// Who may get stateless replies; re-checked when the first message arrives.
    pub(crate) admission: Arc<Admission>,
    /// Where received messages are offered (traces, HEP), if anywhere.
    pub(crate) tracer: Option<crate::trace::Tracer>,
}

/// Time of the last successful write, as milliseconds since the connection started; shared
/// by the read and write halves (which run in one task) so idleness counts both directions.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_write_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_write_ms.store(ms, Ordering::Relaxed);
    }

    fn last_write(&self) -> Instant {
        self.start + Duration::from_millis(self.last_write_ms.load(Ordering::Relaxed))
    }
}

/// Runs the connection until the peer closes it, a limit is hit, or the core goes away.
/// `queue` feeds the writer; `to_writer` is a sender on the same queue, used for pongs and
/// stateless error responses.
pub(crate) async fn drive<S>(
    io: S,
    ctx: StreamCtx,
    to_writer: mpsc::Sender<Bytes>,
    mut queue: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let activity = Activity {
        start: Instant::now(),
        last_write_ms: AtomicU64::new(0),
    };
    let mut last_words = None;
    let outcome = tokio::select! {
        r = read_loop(&mut reader, &ctx, &to_writer, &activity, &mut last_words) => r,
        w = write_loop(&mut writer, &mut queue, &ctx, &activity) => w,
    };
    if let Some(reason) = outcome {
        ctx.counters.dropped(reason);
        tracing::debug!(peer = %ctx.peer, reason = reason.as_str(), "closing SIP stream");
    }
    // The answer to an unfinished request, written before the close (see read_loop).
    if let Some(bytes) = last_words {
        let _ = tokio::time::timeout(CLOSE_GRACE, writer.write_all(&bytes)).await;
    }
    // Best effort: a peer that stopped reading must not hold the task.
    let _ = tokio::time::timeout(CLOSE_GRACE, writer.shutdown()).await;
    // Messages still queued are lost with the connection; count them as failed sends.
    queue.close();
    while queue.try_recv().is_ok() {
        ctx.counters.send_failure("closed");
    }
}

/// Reads, frames and dispatches messages. `Some(reason)` when the connection is closed for
/// bad input or a timeout; `None` on an orderly close. A request whose header section never
/// ended (RFC 4475 `baddn` on a stream) leaves its stateless 400 in `last_words`, to be sent
/// before the connection closes.
async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut R,
    ctx: &StreamCtx,
    to_writer: &mpsc::Sender<Bytes>,
    activity: &Activity,
    last_words: &mut Option<Bytes>,
) -> Option<DropReason> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut framer = Framer::new();
    // When the first byte of the message now in the buffer arrived (slowloris deadline).
    let mut message_start: Option<Instant> = None;
    let mut last_read = Instant::now();
    // Until an accepted connection has delivered one valid SIP message from an admitted
    // source, it is "unproven": its deadline is fixed at accept, and neither keep-alives nor
    // partial or malformed messages move it.
    let first_deadline = ctx.first_message.map(|d| last_read + d);
    let mut proven = first_deadline.is_none();
    loop {
        loop {
            match framer.frame(&buf, &ctx.limits) {
                Ok(Frame::KeepAlive(n)) => {
                    if n == 4 {
                        // RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
                        // A full queue means the peer is not reading; skip the pong.
                        if to_writer.try_send(Bytes::from_static(PONG)).is_ok() {
                            ctx.counters.keepalives.inc();
                        }
                    }
                    buf.advance(n);
                }
                Ok(Frame::Complete(n)) => {
                    // Copy the message out so the read buffer is reused and a message held by
                    // the core does not pin a whole read buffer.
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    buf.advance(n);
                    ctx.counters.received.inc();
                    ctx.counters.received_bytes.inc_by(n as u64);
                    match examine(data.clone(), ctx.peer, &ctx.limits) {
                        Intake::Deliver(m) => {
                            if !proven {
                                // The ACL may have changed since accept.
                                let now = std::time::Instant::now();
                                if let Some(r) =
                                    ctx.admission
                                        .refusal(ctx.peer.side, ctx.peer.addr.ip(), now)
                                {
                                    return Some(r);
                                }
                                proven = true;
                            }
                            // A reliable transport must not lose messages (no retransmission
                            // would repair it), so wait for room: that stops reading and lets
                            // TCP flow control push back on the peer.
                            if let Some(t) = &ctx.tracer {
                                t.capture_received(
                                    m.peer.side,
                                    m.peer.transport,
                                    (m.peer.addr, ctx.local),
                                    &m.message,
                                    data,
                                );
                            }
                            if ctx.inbound.send(m).await.is_err() {
                                return None;
                            }
                        }
                        Intake::Reject(r) => {
                            let now = std::time::Instant::now();
                            match ctx
                                .admission
                                .may_reply(ctx.peer.side, ctx.peer.addr.ip(), now)
                            {
                                Ok(()) => {
                                    // RFC 3261 §18.2.2: the response goes back on this
                                    // connection.
                                    ctx.counters.rejected(r.code);
                                    if to_writer.try_send(r.bytes).is_err() {
                                        ctx.counters.send_failure("queue_full");
                                    }
                                }
                                Err(reason) => ctx.counters.dropped(reason),
                            }
                        }
                        Intake::Drop(reason) => ctx.counters.dropped(reason),
                    }
                }
                Ok(Frame::Incomplete) => break,
                Err(e) => {
                    // A request that cannot be framed (Content-Length invalid or repeated)
                    // still gets its 400 before the close, when the parser can answer it.
                    let head = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(buf.len(), |i| i + 4);
                    let missing = e == FrameError::MissingContentLength;
                    *last_words = answer_unfinished(ctx, &buf[..head], missing);
                    return Some(match e {
                        FrameError::MissingContentLength => DropReason::MissingContentLength,
                        FrameError::BadContentLength => DropReason::BadContentLength,
                        _ => DropReason::StreamTooLarge,
                    });
                }
            }
        }
        // A partial keep-alive (CR, CRLF, CRLFCR) is not a message in progress: a lone CRLF
        // pong may legitimately be followed by silence.
        let in_message = !buf.is_empty() && !b"\r\n\r\n".starts_with(&buf[..]);
        if !in_message {
            message_start = None;
        } else if message_start.is_none() {
            message_start = Some(last_read);
        }
        let idle_deadline = last_read.max(activity.last_write()) + ctx.stream.idle_timeout;
        let mut deadline = match message_start {
            Some(t) => idle_deadline.min(t + ctx.stream.message_timeout),
            None => idle_deadline,
        };
        if let Some(first) = first_deadline.filter(|_| !proven) {
            deadline = deadline.min(first);
        }
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return None,
            Ok(Ok(_)) => last_read = Instant::now(),
            Ok(Err(e)) => {
                tracing::debug!(peer = %ctx.peer, error = %e, "SIP stream read error");
                return Some(DropReason::ReadError);
            }
            Err(_elapsed) => {
                let now = Instant::now();
                if !proven && first_deadline.is_some_and(|t| now >= t) {
                    // An unfinished first request (RFC 4475 `baddn`) still gets its 400.
                    if message_start.is_some() {
                        *last_words = answer_unfinished(ctx, &buf, false);
                    }
                    return Some(DropReason::FirstMessageTimeout);
                }
                if message_start.is_some_and(|t| now >= t + ctx.stream.message_timeout) {
                    *last_words = answer_unfinished(ctx, &buf, false);
                    return Some(DropReason::MessageTimeout);
                }
                // Writes since the deadline was computed keep the connection alive.
                if now >= last_read.max(activity.last_write()) + ctx.stream.idle_timeout {
                    return Some(DropReason::IdleTimeout);
                }
            }
        }
    }
}

/// The stateless answer to a request the connection will never finish (cut by a deadline or
/// unframeable), when the parser can answer it and the source may be answered (admitted and
/// within the stateless-reply budget, like every stateless reply). Counted either way.
///
/// `missing_length`: the framer found no Content-Length. The head alone may then parse (a
/// datagram may omit it), but on a stream the request has no end (RFC 3261 §18.3, §20.14), so
/// it gets the parser's 400 for a missing Content-Length (RFC 4475 `inv2543` over TCP) —
/// except an ACK, which is never answered (§17.1.1.3).
fn answer_unfinished(ctx: &StreamCtx, partial: &[u8], missing_length: bool) -> Option<Bytes> {
    let r = match examine(Bytes::copy_from_slice(partial), ctx.peer, &ctx.limits) {
        Intake::Reject(r) => r,
        Intake::Deliver(m)
            if missing_length
                && m.message.is_request()
                && m.message.method() != Some(&Method::Ack) =>
        {
            let (code, reason) = Problem::Missing(HeaderName::ContentLength).status();
            rejection(m.message.headers(), code, reason, ctx.peer.addr)
        }
        Intake::Deliver(_) | Intake::Drop(_) => return None,
    };
    match ctx
        .admission
        .may_reply(ctx.peer.side, ctx.peer.addr.ip(), std::time::Instant::now())
    {
        Ok(()) => {
            ctx.counters.rejected(r.code);
            Some(r.bytes)
        }
        Err(reason) => {
            ctx.counters.dropped(reason);
            None
        }
    }
}

/// Writes queued messages until the queue closes or a write fails.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: &mut W,
    queue: &mut mpsc::Receiver<Bytes>,
    ctx: &StreamCtx,
    activity: &Activity,
) -> Option<DropReason> {
    while let Some(first) = queue.recv().await {
        // Write whatever else is queued before flushing: one flush (one TLS record flush, one
        // syscall burst) per batch.
        let mut next = Some(first);
        while let Some(data) = next {
            if let Err(e) = writer.write_all(&data).await {
                tracing::debug!(peer = %ctx.peer, error = %e, "SIP stream write error");
                ctx.counters.send_failure("io");
                return None;
            }
            if data.as_ref() != PONG {
                ctx.counters.sent(data.len());
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!(peer = %ctx.peer, error = %e, "SIP stream flush error");
            return None;
        }
        activity.touch();
    }
    None
}
