//! One client connection: read, parse, dispatch, write, repeat.
//!
//! All complete requests in the read buffer are executed before the
//! replies are written in one go, which is what makes pipelining cheap.
//! Pushes from other connections (pub/sub messages, MONITOR lines, CLIENT
//! KILL) arrive on an mpsc channel and are interleaved between batches.

use crate::client::{Client, ClientHandle, Push};
use crate::dispatch;
use crate::server::Server;
use bytes::{Buf, BytesMut};
use ferrite_resp::parser::Parsed;
use ferrite_resp::{Limits, ReplyBuf, RequestParser};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;

/// A client socket: TCP or a Unix domain socket (`unixsocket`).
pub trait Sock: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send> Sock for T {}

const READ_CHUNK: usize = 16 * 1024;
/// A connection whose reads keep filling the buffer (bulk loading, big pipelines) reads up to this much at once:
/// fewer read and reply-write syscalls per command. Reads smaller than READ_CHUNK shrink it back.
const MAX_READ_CHUNK: usize = 512 * 1024;
/// `client-query-buffer-limit`: a client whose unprocessed input grows past this is closed (Redis's default 1 GB).
pub static QUERY_BUFFER_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1 << 30);

/// Redis 7.0's reply to a non-loopback client in protected mode.
const DENIED: &[u8] =
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set \
for the default user. In this mode connections are only accepted from the loopback interface. If you \
want to connect from external computers to Redis you may adopt one of the following solutions: 1) \
Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback \
interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis \
is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change \
permanent. 2) Alternatively you can just disable the protected mode by editing the Redis \
configuration file, and setting the protected mode option to 'no', and then restarting the server. \
3) If you started the server manually just for testing, restart it with the '--protected-mode no' \
option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of \
the above things in order for the server to start accepting connections from the outside.\r\n";

/// Protected mode (Redis 7.0): with `protected-mode yes` and no password for the default user, only loopback
/// clients are served.
pub fn protected_mode_denies(protected: bool, default_nopass: bool, peer: std::net::IpAddr) -> bool {
    let local = match peer {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    protected && default_nopass && !local
}

/// Write the reply buffer early when a pipeline produces this much.
const FLUSH_AT: usize = 1024 * 1024;

/// Encode a push message for this client's protocol.
pub fn encode_push(out: &mut ReplyBuf, p: &Push) {
    match p {
        Push::Message { kind, pattern, channel, payload } => {
            out.push(if pattern.is_some() { 4 } else { 3 });
            out.bulk(kind.as_bytes());
            if let Some(pat) = pattern {
                out.bulk(pat);
            }
            out.bulk(channel);
            out.bulk(payload);
        }
        Push::Monitor(line) => out.simple(line),
        Push::Reply(b) => out.raw(b),
        Push::Invalidate { keys, pubsub } => {
            if *pubsub && !out.resp3 {
                out.push(3);
                out.bulk(b"message");
                out.bulk(b"__redis__:invalidate");
            } else {
                out.push(2);
                out.bulk(b"invalidate");
            }
            match keys {
                None => out.null(),
                Some(k) => {
                    out.array(k.len());
                    for key in k {
                        out.bulk(key);
                    }
                }
            }
        }
        Push::RedirBroken(id) => {
            out.push(2);
            out.bulk(b"tracking-redir-broken");
            out.int(*id as i64);
        }
        Push::Kill | Push::Unblock { .. } => {}
    }
}

pub async fn handle(srv: Arc<Server>, sock: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let _ = sock.set_nodelay(true);
    let trusted = !protected_mode_denies(true, true, peer.ip());
    serve(srv, sock, peer.to_string(), local.to_string(), trusted).await
}

/// A client of the Unix domain socket at `path` (Redis shows `addr=<path>:0 laddr=<path>:0`; protected mode does
/// not apply to it).
pub async fn handle_unix(srv: Arc<Server>, sock: UnixStream, path: Arc<str>) {
    let addr = format!("{path}:0");
    serve(srv, sock, addr.clone(), addr, true).await
}

/// Serve one client. `local_peer`: a loopback or Unix socket client (served in protected mode).
async fn serve<S: Sock>(srv: Arc<Server>, mut sock: S, addr: String, laddr: String, local_peer: bool) {
    let (maxclients, needs_auth, max_bulk) = {
        let c = srv.config.read();
        (c.maxclients, srv.acl.auth_required(), c.proto_max_bulk_len)
    };
    if srv.clients.len() >= maxclients {
        srv.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
        let _ = sock.write_all(b"-ERR max number of clients reached\r\n").await;
        return;
    }
    let protected = crate::cmd::config::accepted_value("protected-mode").as_deref() != Some("no");
    if protected && srv.acl.default_nopass() && !local_peer {
        srv.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
        let _ = sock.write_all(DENIED).await;
        return;
    }
    srv.stats.total_connections_received.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Push>();
    let handle = Arc::new(ClientHandle::new(srv.clients.next_id(), addr, laddr, sock.as_raw_fd(), tx, srv.uptime_ms()));
    srv.clients.register(handle.clone());
    let mut client = Client::new(handle.clone(), !needs_auth);
    let mut parser = RequestParser::new(Limits { max_bulk_len: max_bulk, ..Limits::default() });
    parser.authenticated = client.authenticated;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut read_chunk = READ_CHUNK;
    let mut out = ReplyBuf::new(false);
    let mut args = Vec::with_capacity(8);
    // The name last stored in `handle.last_cmd` by this task.
    let mut stored_name: &'static str = *handle.last_cmd.lock();
    let mut last_cmd = dispatch::LastCmd::default();

    'conn: loop {
        // Execute everything already buffered.
        let mut ncmds = 0u64;
        let mut last_name: Option<&'static str> = None;
        // appendfsync always: replies wait until their writes are fsynced.
        let mut durable = 0u64;
        loop {
            // CLIENT KILL takes effect before anything else the client sent.
            if handle.killed.load(Ordering::Relaxed) {
                break 'conn;
            }
            match parser.parse(&mut rbuf, &mut args) {
                Ok(Parsed::Command) => {
                    if srv.paused.load(Ordering::Relaxed)
                        && !wait_while_paused(&srv, &client, &args, &mut sock, &mut out).await
                    {
                        break 'conn;
                    }
                    out.resp3 = client.resp3;
                    let mark = out.buf.len();
                    // CLIENT REPLY SKIP armed by the previous command applies to this one.
                    client.reply_skip_now = std::mem::take(&mut client.reply_skip);
                    // maxmemory-clients (only while set): big arguments count, and clients are evicted, before it runs.
                    if crate::client::before_command(&srv, &mut client, &rbuf, &args) {
                        break 'conn;
                    }
                    let ran = dispatch::execute_with(&srv, &mut client, &args, &mut out, &mut last_cmd);
                    durable = durable.max(crate::persist::propagate::take_written());
                    let skip_this = std::mem::take(&mut client.reply_skip_now);
                    // Pub/sub confirmations are pushes: Redis sends them even
                    // with CLIENT REPLY OFF/SKIP.
                    if (client.reply_off || skip_this) && !ran.is_some_and(|n| n.ends_with("subscribe")) {
                        out.buf.truncate(mark);
                    }
                    if ran.is_some() {
                        last_name = ran;
                    }
                    args.clear();
                    if args.capacity() > 4096 {
                        // A command with very many arguments: don't keep its argv array.
                        args = Vec::with_capacity(8);
                    }
                    ncmds += 1;
                    parser.authenticated = client.authenticated;
                    if client.close_after_reply || client.waiter.is_some() {
                        break;
                    }
                    if crate::obuf::normal_limited() {
                        // client-output-buffer-limit normal: the replies not yet written count; a client over
                        // the limit is closed without them, as Redis does.
                        let os = &handle.tx.out;
                        os.set_writing(out.buf.len());
                        let over = os.check(crate::server::now_ms());
                        os.set_writing(0);
                        if over {
                            break 'conn;
                        }
                    }
                    if out.buf.len() >= FLUSH_AT {
                        if durable > 0 {
                            crate::persist::aof::wait_durable(&srv, std::mem::take(&mut durable)).await;
                        }
                        // What the socket takes now; the rest stays queued (never wait here for the client to
                        // read: it may still be sending the requests we have not read yet).
                        if flush_now(&srv, &mut sock, &mut out, &handle.tx.out).is_err() {
                            break 'conn;
                        }
                    }
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => {
                    out.error(&format!("ERR {}", e.message()));
                    srv.stats.total_error_replies.fetch_add(1, Ordering::Relaxed);
                    client.close_after_reply = true;
                    break;
                }
            }
        }
        // Client memory (CLIENT LIST tot-mem) and maxmemory-clients eviction.
        if crate::client::account(&srv, &mut client, &rbuf, parser.pending_bulk(), &args) {
            break;
        }
        if ncmds > 0 {
            srv.stats.total_commands_processed.fetch_add(ncmds, Ordering::Relaxed);
            handle.last_interaction_ms.store(srv.uptime_ms_coarse(), Ordering::Relaxed);
            // Only this task writes `last_cmd`: skip the lock when unchanged.
            if let Some(n) = last_name.filter(|n| !std::ptr::eq(*n, stored_name)) {
                *handle.last_cmd.lock() = n;
                stored_name = n;
            }
        }
        if durable > 0 {
            crate::persist::aof::wait_durable(&srv, durable).await;
        }
        if !out.buf.is_empty() {
            // Closing, blocking or shutting down: every reply is written first. Otherwise write what the socket
            // takes now and go on reading while the rest waits for the client to read (Redis keeps reading and
            // executing a client's requests while its replies pile up; waiting here could deadlock with a client
            // that sends a whole pipeline before reading any reply).
            let finish = client.close_after_reply
                || client.shutdown
                || client.waiter.is_some()
                || handle.killed.load(Ordering::Relaxed);
            let r = if finish {
                write_out(&srv, &mut sock, &mut out, &handle.tx.out).await
            } else {
                flush_now(&srv, &mut sock, &mut out, &handle.tx.out)
            };
            if r.is_err() {
                break;
            }
        }
        if client.close_after_reply || handle.killed.load(Ordering::Relaxed) {
            break;
        }
        if client.shutdown {
            srv.shutdown();
            break;
        }
        if client.waiter.is_some() {
            let stay = wait_blocked(&srv, &mut sock, &mut rbuf, &mut rx, &mut client, &mut out).await;
            if !stay || write_out(&srv, &mut sock, &mut out, &handle.tx.out).await.is_err() {
                break;
            }
            // Process what arrived while blocked.
            continue;
        }
        if rbuf.is_empty() && read_chunk == READ_CHUNK && rbuf.capacity() > 4 * READ_CHUNK {
            // Back to small reads with nothing pending: give the big buffer back.
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if rbuf.capacity() - rbuf.len() < read_chunk / 4 {
            rbuf.reserve(read_chunk);
        }
        if rbuf.is_empty() && rbuf.capacity() > 2 * MAX_READ_CHUNK {
            // The buffer of a big argument (reclaimed by `reserve` once the argument was dropped): an idle
            // client must not keep it (Redis's 'pending querybuf' trim).
            rbuf = BytesMut::with_capacity(read_chunk);
        }
        let spare = rbuf.capacity() - rbuf.len();
        let pending = !out.buf.is_empty();
        let os = &handle.tx.out;
        tokio::select! {
            ev = next_io(&mut sock, &out.buf, &mut rbuf) => {
                let r = match ev {
                    Io::Wrote(r) => {
                        match r {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                srv.stats.net_output_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                out.buf.advance(n);
                                if flush_now(&srv, &mut sock, &mut out, os).is_err() {
                                    break;
                                }
                            }
                        }
                        continue;
                    }
                    Io::Read(r) => r,
                };
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if n == spare {
                            read_chunk = (read_chunk * 2).min(MAX_READ_CHUNK);
                        } else if n < READ_CHUNK {
                            read_chunk = READ_CHUNK;
                        }
                        srv.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        if rbuf.len() > QUERY_BUFFER_LIMIT.load(Ordering::Relaxed) {
                            eprintln!(
                                "ferrite: Closing client that reached max query buffer length: id={} addr={} \
                                 (qbuf initial bytes: {:?})",
                                handle.id,
                                handle.addr,
                                String::from_utf8_lossy(&rbuf[..rbuf.len().min(64)])
                            );
                            break;
                        }
                    }
                };
            }
            // The output buffer limit is checked while replies wait for the client.
            _ = os.wake.notified(), if pending => {
                if os.is_over() {
                    break;
                }
            }
            p = rx.recv() => {
                let Some(p) = p else { break };
                if matches!(p, Push::Kill) {
                    break;
                }
                out.resp3 = client.resp3;
                os.taken(crate::obuf::push_size(&p));
                encode_push(&mut out, &p);
                // Drain whatever else is queued, bounded per round.
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(Push::Kill) => break 'conn,
                        Ok(p) => {
                            os.taken(crate::obuf::push_size(&p));
                            encode_push(&mut out, &p)
                        }
                        Err(_) => break,
                    }
                }
                if os.is_over() {
                    break 'conn;
                }
            }
        }
    }
    let _ = sock.shutdown().await;
    cleanup(&srv, &mut client);
}

/// CLIENT PAUSE: hold this command (flushing earlier replies first) until
/// the pause ends or is lifted. Returns false if the connection broke.
async fn wait_while_paused<S: Sock>(
    srv: &Server,
    client: &Client,
    args: &[bytes::Bytes],
    sock: &mut S,
    out: &mut ReplyBuf,
) -> bool {
    use ferrite_commands::Flags;
    // Scripts count as writes unless their flags say no-writes. The
    // recorded table lacks may_replicate (COMMAND INFO does not show it):
    // PFCOUNT, PUBLISH and SPUBLISH are Redis 7.0's other such commands.
    let may_write = |a: &[bytes::Bytes], meta: &ferrite_commands::CommandMeta| {
        crate::script::may_write(srv, a).unwrap_or_else(|| {
            meta.flags.has(Flags::WRITE | Flags::MAY_REPLICATE)
                || matches!(meta.name.as_str(), "pfcount" | "publish" | "spublish")
        })
    };
    let write = match dispatch::resolve(srv, args) {
        Ok((cmd, meta)) => {
            may_write(args, meta)
                || (cmd.imp.name == "exec"
                    && client.multi.as_ref().is_some_and(|m| {
                        m.queue.iter().any(|a| dispatch::resolve(srv, a).is_ok_and(|(_, qm)| may_write(a, qm)))
                    }))
        }
        Err(_) => false,
    };
    // Queued inside MULTI: nothing runs yet, so nothing waits.
    if client.multi.is_some() && !matches!(args[0].to_ascii_lowercase().as_slice(), b"exec") {
        return true;
    }
    let mut flushed = false;
    // Counted in INFO blocked_clients while held, like Redis's postponed clients.
    let mut counted = false;
    let mut ok = true;
    while let Some(until) = srv.pause_until(write) {
        if !counted {
            srv.stats.paused_clients.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        if !flushed && !out.buf.is_empty() {
            if write_out(srv, sock, out, &client.handle.tx.out).await.is_err() {
                ok = false;
                break;
            }
            flushed = true;
        }
        let wait = std::time::Duration::from_millis((until - crate::server::now_ms()).max(1) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = srv.unpaused.notified() => {}
        }
    }
    if counted {
        srv.stats.paused_clients.fetch_sub(1, Ordering::Relaxed);
    }
    ok
}

/// Wait until the blocked command is served, times out, is unblocked, or
/// the client goes away. Returns false when the connection must close.
/// The reply (served or timeout) is appended to `out`.
async fn wait_blocked<S: Sock>(
    srv: &Server,
    sock: &mut S,
    rbuf: &mut BytesMut,
    rx: &mut mpsc::UnboundedReceiver<Push>,
    client: &mut Client,
    out: &mut ReplyBuf,
) -> bool {
    let Some(w) = client.waiter.clone() else { return true };
    let req = client.block.take();
    let deadline = req.as_ref().and_then(|r| r.deadline_ms);
    let cancel = |srv: &Server| {
        let _world = srv.store.world_read();
        srv.blocking.cancel(&w)
    };
    out.resp3 = client.resp3;
    let mut stay = true;
    loop {
        let wait = deadline.map(|d| std::time::Duration::from_millis((d - crate::server::now_ms()).max(0) as u64));
        tokio::select! {
            p = rx.recv() => match p {
                Some(Push::Reply(b)) => {
                    // appendfsync always: the pop that served us is durable first.
                    crate::persist::aof::wait_all_durable(srv).await;
                    out.raw(&b);
                    break;
                }
                None | Some(Push::Kill) => {
                    cancel(srv);
                    stay = false;
                    break;
                }
                Some(Push::Unblock { error }) => {
                    if cancel(srv) {
                        if error {
                            srv.stats.error_reply("UNBLOCKED");
                            out.error("UNBLOCKED client unblocked via CLIENT UNBLOCK");
                        } else {
                            out.null_array();
                        }
                        // Redis 7.0 counts the call as failed either way.
                        crate::stats::unblocked(srv, client, &w.args, true);
                        break;
                    }
                    // Already served: the reply is on its way.
                }
                Some(other) => encode_push(out, &other),
            },
            _ = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                // Redis answers every blocking timeout with a null array
                // (even BLMOVE, whose non-blocking null is a null bulk).
                if cancel(srv) {
                    out.null_array();
                    crate::stats::unblocked(srv, client, &w.args, false);
                    break;
                }
            }
            r = sock.read_buf(rbuf) => match r {
                // The client went away while blocked.
                Ok(0) | Err(_) => {
                    cancel(srv);
                    stay = false;
                    break;
                }
                Ok(n) => {
                    srv.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
        }
    }
    client.waiter = None;
    client.handle.blocked.store(false, Ordering::Relaxed);
    stay
}

/// What the connection's socket did first: took some of the pending replies, or read requests.
enum Io {
    Wrote(std::io::Result<usize>),
    Read(std::io::Result<usize>),
}

/// Wait until the socket takes some of `pending` (if any) or has requests to read into `rbuf`, whichever comes
/// first. Both directions are served by one future because both need the socket.
async fn next_io<S: Sock>(sock: &mut S, pending: &[u8], rbuf: &mut BytesMut) -> Io {
    std::future::poll_fn(|cx| {
        if !pending.is_empty() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut *sock).poll_write(cx, pending) {
                return std::task::Poll::Ready(Io::Wrote(r));
            }
        }
        let read = std::pin::pin!(sock.read_buf(&mut *rbuf));
        read.poll(cx).map(Io::Read)
    })
    .await
}

/// Write as much of the pending replies as the socket takes without waiting; the rest stays in `out` (counted
/// as the client's pending output for CLIENT LIST `omem`, the output buffer limits and `maxmemory-clients`).
fn flush_now<S: Sock>(
    srv: &Server,
    sock: &mut S,
    out: &mut ReplyBuf,
    os: &crate::obuf::OutState,
) -> std::io::Result<()> {
    if os.is_over() {
        return Err(std::io::Error::other("output buffer limit"));
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while !out.buf.is_empty() {
        match std::pin::Pin::new(&mut *sock).poll_write(&mut cx, &out.buf) {
            std::task::Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            std::task::Poll::Ready(Ok(n)) => {
                srv.stats.net_output_bytes.fetch_add(n as u64, Ordering::Relaxed);
                out.buf.advance(n);
            }
            std::task::Poll::Ready(Err(e)) => return Err(e),
            std::task::Poll::Pending => break,
        }
    }
    if out.buf.is_empty() {
        out.buf.clear();
        if out.buf.capacity() > 4 * FLUSH_AT {
            out.buf = BytesMut::with_capacity(16 * 1024);
        }
    }
    os.set_writing(out.buf.len());
    Ok(())
}

async fn write_out<S: Sock>(
    srv: &Server,
    sock: &mut S,
    out: &mut ReplyBuf,
    os: &crate::obuf::OutState,
) -> std::io::Result<()> {
    let n = out.buf.len();
    if os.is_over() {
        return Err(std::io::Error::other("output buffer limit"));
    }
    os.set_writing(n);
    // A client over its output buffer limit is closed even while this write waits for it to read.
    let r = tokio::select! {
        biased;
        r = sock.write_all(&out.buf) => r,
        _ = os.wake.notified() => Err(std::io::Error::other("output buffer limit")),
    };
    os.set_writing(0);
    r?;
    srv.stats.net_output_bytes.fetch_add(n as u64, Ordering::Relaxed);
    out.buf.clear();
    if out.buf.capacity() > 4 * FLUSH_AT {
        out.buf = BytesMut::with_capacity(16 * 1024);
    }
    Ok(())
}

/// Release everything the client held in shared registries.
fn cleanup(srv: &Server, client: &mut Client) {
    if let Some(w) = client.waiter.take() {
        let _world = srv.store.world_read();
        srv.blocking.cancel(&w);
    }
    dispatch::unwatch_all(srv, client);
    crate::cmd::pubsub::unsubscribe_all(srv, client);
    crate::cmd::client::tracking::disable(srv, client);
    if client.handle.monitor.load(Ordering::Relaxed) {
        let mut m = srv.monitors.write();
        m.retain(|(id, _)| *id != client.id);
        srv.monitor_count.store(m.len(), Ordering::Relaxed);
    }
    srv.clients.unregister(client.id);
    client.handle.tx.out.release();
}

#[cfg(test)]
mod tests {
    use super::protected_mode_denies;
    use std::net::IpAddr;

    #[test]
    fn protected_mode_serves_loopback_or_passwords_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!protected_mode_denies(true, true, ip("127.0.0.1")));
        assert!(!protected_mode_denies(true, true, ip("127.3.2.1")));
        assert!(!protected_mode_denies(true, true, ip("::1")));
        assert!(!protected_mode_denies(true, true, ip("::ffff:127.0.0.1")));
        assert!(protected_mode_denies(true, true, ip("10.1.2.3")));
        assert!(protected_mode_denies(true, true, ip("fe80::1")));
        // protected-mode no, or a password for the default user.
        assert!(!protected_mode_denies(false, true, ip("10.1.2.3")));
        assert!(!protected_mode_denies(true, false, ip("10.1.2.3")));
    }
}
