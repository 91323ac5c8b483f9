//! A node's Content-Length body passed on to an HTTP/1 client by the client connection's own
//! task, instead of by a reader task of its own (`h1.rs`) whose pieces the client's task
//! writes: copied through a buffer (`direct_bodies on`), or moved by splice(2)
//! (`splice_bodies on`).
//!
//! Copying in the client's task writes each piece right after reading it, while its bytes are
//! still in the cache; with a reader task, the pieces of every other stream woken in between
//! pass through the cache first. With the router's core as the limit (a CPU quota,
//! docs/benchmarks-history.md, "Tenth session"), that took up to a fifth off its CPU per 4 MiB
//! object and two thirds off its peak memory; with the core the nodes and the load generator
//! share as the limit, it lost some throughput, as its reads and writes are smaller and the
//! client wakes more often for the same bytes. And while both sockets stay ready its loop does
//! not hand the runtime back between pieces, so other connections wait: the 4 MiB p99 was
//! about three times the reader task's (docs/benchmarks.md, "Copying large bodies"; yielding
//! after each piece, or every fourth, fixed that but cost 5-25% of the 4 MiB throughput). So
//! it is off unless turned on.
//!
//! splice(2) moves the bytes from one socket into a pipe and from the pipe into the other, as
//! page references, where reading and writing them copies each byte twice. It took 12-37% off
//! the router's CPU per large object but cost throughput on one machine, because on loopback
//! the client's copy of the bytes got dearer (docs/benchmarks-history.md, "Ninth session"). A
//! body that can get no pipe is copied.
//!
//! Only a body framed by Content-Length is relayed here, on an HTTP/1 client's connection:
//! its bytes go to the client as they are. Chunked bodies are decoded and re-framed, and h2c
//! clients get frames, so those go through a reader task.
//!
//! Readiness comes from tokio's reactor for the two sockets; the pipe is never waited on.
//! Data goes into the pipe only when it is empty, and out of it only while it holds some, so
//! a pipe that is full or empty can never be mistaken for a socket that is not ready (which
//! would clear that socket's readiness and leave the transfer waiting for an edge that has
//! already passed).

use crate::downstream::{stalled_client, write_all};
use crate::h1::{cut_short, silent_node};
use rustix::pipe::{self, PipeFlags, SpliceFlags};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::thread::LocalKey;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, Interest};
use tokio::net::TcpStream;

/// How many emptied pipes, and copy buffers, a worker thread keeps for the next body, so a
/// pipe is not made and closed (three system calls), nor a buffer allocated, for every
/// response.
const SPARES: usize = 8;

/// A pipe to carry bytes between two sockets; empty whenever it is not in use.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity: the most one splice into it may move.
    size: usize,
}

thread_local! {
    static SPARE_PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    /// An empty pipe of (about) `size` bytes, or a spare one of this thread's (a router asks
    /// for one size only). The size is what the kernel grants: a user over its pipe-buffer
    /// limit gets the default size, which only makes more, smaller transfers.
    pub(crate) fn take(size: usize) -> io::Result<Pipe> {
        if let Some(pipe) = SPARE_PIPES.with_borrow_mut(Vec::pop) {
            return Ok(pipe);
        }
        let (read, write) = pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let size =
            pipe::fcntl_setpipe_size(&write, size).or_else(|_| pipe::fcntl_getpipe_size(&write))?;
        Ok(Pipe { read, write, size })
    }

    /// Keeps an emptied pipe for the next body on this thread.
    fn give_back(self) {
        keep_spare(&SPARE_PIPES, self);
    }
}

/// Keeps `spare` for the next body on this thread, unless `SPARES` are kept already.
fn keep_spare<T>(spares: &'static LocalKey<RefCell<Vec<T>>>, spare: T) {
    spares.with_borrow_mut(|kept| {
        if kept.len() < SPARES {
            kept.push(spare);
        }
    });
}

/// Which side of a transfer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Broken {
    /// The node's connection failed, ended early (`UnexpectedEof`), or was silent for
    /// longer than allowed (`TimedOut`).
    #[error("node: {0}")]
    Node(io::Error),
    /// The client's connection failed.
    #[error("client: {0}")]
    Client(io::Error),
}

/// Copies exactly `length` bytes from `from` to `to`, a piece of at most `chunk` bytes at a
/// time, each written as soon as it is read; waits at most `idle` for each piece from `from`
/// and `send_limit` for room in `to`. Timers are armed only when a socket is not ready.
pub(crate) async fn copy(
    from: &mut TcpStream,
    to: &mut TcpStream,
    mut length: u64,
    chunk: usize,
    idle: Duration,
    send_limit: Duration,
) -> Result<(), Broken> {
    let mut buffer = SPARE_BUFFERS
        .with_borrow_mut(Vec::pop)
        .filter(|buffer| buffer.len() == chunk)
        .unwrap_or_else(|| vec![0; chunk]);
    while length > 0 {
        let want = usize::try_from(length).unwrap_or(usize::MAX).min(chunk);
        // Through `AsyncRead`, not `try_read`: a read that fills less than the buffer
        // leaves the socket not ready, so the next piece waits for the reactor instead of
        // costing a read that finds nothing (about 22 per 4 MiB body).
        let mut read = pin!(from.read(&mut buffer[..want]));
        let read = match poll_once(read.as_mut()).await {
            Some(read) => read,
            None => match tokio::time::timeout(idle, read).await {
                Ok(read) => read,
                Err(_) => return Err(Broken::Node(silent_node())),
            },
        };
        let read = match read {
            Ok(0) => return Err(Broken::Node(cut_short())),
            Ok(read) => read,
            Err(error) => return Err(Broken::Node(error)),
        };
        length -= read as u64;
        write_all(to, &mut [&buffer[..read]], send_limit)
            .await
            .map_err(Broken::Client)?;
    }
    keep_spare(&SPARE_BUFFERS, buffer);
    Ok(())
}

/// Polls `future` once: its output if it is ready, None (and its waker registered) if not.
async fn poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Moves exactly `length` bytes from `from` to `to` through `pipe`, waiting at most `idle`
/// for each piece from `from` and `send_limit` for room in `to`. On an error some bytes may
/// have gone and some may be left in the pipe, which is then closed; on success it is kept
/// for the next body.
pub(crate) async fn splice(
    from: &TcpStream,
    to: &TcpStream,
    pipe: Pipe,
    mut length: u64,
    idle: Duration,
    send_limit: Duration,
) -> Result<(), Broken> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    while length > 0 {
        let want = usize::try_from(length).unwrap_or(usize::MAX).min(pipe.size);
        let into_pipe = retry(from, Interest::READABLE, || {
            pipe::splice(from, None, &pipe.write, None, want, flags)
        });
        let mut in_pipe = match tokio::time::timeout(idle, into_pipe).await {
            Ok(moved) => moved.map_err(Broken::Node)?,
            Err(_) => return Err(Broken::Node(silent_node())),
        };
        if in_pipe == 0 {
            return Err(Broken::Node(cut_short()));
        }
        length -= in_pipe as u64;
        while in_pipe > 0 {
            // As MSG_MORE: more follows, so the kernel need not send a short segment now.
            let out = if length > 0 {
                flags | SpliceFlags::MORE
            } else {
                flags
            };
            let out_of_pipe = retry(to, Interest::WRITABLE, || {
                pipe::splice(&pipe.read, None, to, None, in_pipe, out)
            });
            let moved = match tokio::time::timeout(send_limit, out_of_pipe).await {
                Ok(moved) => moved.map_err(Broken::Client)?,
                Err(_) => return Err(Broken::Client(stalled_client())),
            };
            if moved == 0 {
                return Err(Broken::Client(io::ErrorKind::WriteZero.into()));
            }
            in_pipe -= moved;
        }
    }
    pipe.give_back();
    Ok(())
}

/// Runs `splice` once `socket` is ready for `interest`, again after each time it finds the
/// socket was not ready after all.
async fn retry(
    socket: &TcpStream,
    interest: Interest,
    mut splice: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    loop {
        socket.ready(interest).await?;
        match socket.try_io(interest, || splice().map_err(io::Error::from)) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    const IDLE: Duration = Duration::from_secs(5);

    /// Two connected loopback sockets.
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    fn pattern(length: usize) -> Vec<u8> {
        (0..length).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// How a test relays a body: spliced through a pipe, or copied, of this many bytes.
    #[derive(Debug, Clone, Copy)]
    enum Way {
        Splice(usize),
        Copy(usize),
    }

    const WAYS: [Way; 2] = [Way::Splice(64 * 1024), Way::Copy(64 * 1024)];

    async fn relay(
        way: Way,
        from: &mut TcpStream,
        to: &mut TcpStream,
        length: u64,
        idle: Duration,
    ) -> Result<(), Broken> {
        match way {
            Way::Splice(size) => {
                splice(from, to, Pipe::take(size).unwrap(), length, idle, IDLE).await
            }
            Way::Copy(chunk) => copy(from, to, length, chunk, idle, IDLE).await,
        }
    }

    /// A node socket that sends `sent`, a client socket that reads everything; what the
    /// client got and what relaying `length` bytes returned.
    async fn through(sent: Vec<u8>, length: u64, way: Way) -> (Vec<u8>, Result<(), Broken>) {
        let (mut node, mut from) = socket_pair().await;
        let (mut to, mut client) = socket_pair().await;
        let sender = tokio::spawn(async move {
            node.write_all(&sent).await.unwrap();
            // The node closes after what it sent.
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let result = relay(way, &mut from, &mut to, length, IDLE).await;
        drop(to);
        sender.await.unwrap();
        (reader.await.unwrap(), result)
    }

    #[tokio::test]
    async fn bodies_arrive_whole_through_pipes_and_buffers_of_any_size() {
        for (length, size) in [
            (1, 4096),
            (5 << 20, 64 * 1024),
            (3 << 20, 4096),
            (300_001, 1 << 20),
        ] {
            for way in [Way::Splice(size), Way::Copy(size)] {
                let sent = pattern(length);
                let (got, result) = through(sent.clone(), length as u64, way).await;
                result.unwrap();
                assert!(got == sent, "{length} bytes, {way:?}");
            }
        }
    }

    /// A thread keeps up to `SPARES` emptied pipes (and copy buffers) for the next bodies,
    /// and closes the rest.
    #[test]
    fn a_thread_keeps_a_few_spare_pipes() {
        let pipes: Vec<Pipe> = (0..=SPARES).map(|_| Pipe::take(4096).unwrap()).collect();
        for pipe in pipes {
            pipe.give_back();
        }
        assert_eq!(SPARE_PIPES.with_borrow(Vec::len), SPARES);
    }

    /// The whole body reaches a client whose connection stays open for the next response:
    /// nothing of it waits for the connection's close to go out. (A last piece sent with
    /// SPLICE_F_MORE is held back by the kernel for about 200 ms and then sent: this test
    /// takes 0.2 s instead of 0.01 s then, which no bound here tells apart from a slow
    /// machine.)
    #[tokio::test]
    async fn a_body_arrives_whole_on_a_connection_that_stays_open() {
        for way in WAYS {
            for length in [1000, 200_000] {
                let (mut node, mut from) = socket_pair().await;
                let (mut to, mut client) = socket_pair().await;
                node.write_all(&pattern(length)).await.unwrap();
                relay(way, &mut from, &mut to, length as u64, IDLE)
                    .await
                    .unwrap();
                let mut got = vec![0; length];
                tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("{way:?}, {length} bytes: the end was held back"))
                    .unwrap();
                assert!(got == pattern(length), "{way:?}");
                drop((node, to));
            }
        }
    }

    #[tokio::test]
    async fn only_the_framed_length_is_moved() {
        for way in WAYS {
            let sent = pattern(200_000);
            let (got, result) = through(sent.clone(), 150_000, way).await;
            result.unwrap();
            assert!(got == sent[..150_000], "{way:?}");
        }
    }

    #[tokio::test]
    async fn a_node_that_ends_early_is_an_error() {
        for way in WAYS {
            let sent = pattern(100_000);
            let (got, result) = through(sent.clone(), 100_001, way).await;
            assert!(
                matches!(&result, Err(Broken::Node(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
                "{way:?}: {result:?}"
            );
            assert!(got == sent, "{way:?}: what the node sent is passed on");
        }
    }

    #[tokio::test]
    async fn a_client_that_goes_away_is_an_error() {
        for way in WAYS {
            let (mut node, mut from) = socket_pair().await;
            let (mut to, client) = socket_pair().await;
            drop(client);
            let sender = tokio::spawn(async move {
                let _ = node.write_all(&pattern(8 << 20)).await;
            });
            let result = relay(way, &mut from, &mut to, 8 << 20, IDLE).await;
            assert!(
                matches!(result, Err(Broken::Client(_))),
                "{way:?}: {result:?}"
            );
            drop(from);
            sender.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_node_silent_mid_body_is_an_error_after_the_idle_limit() {
        for way in WAYS {
            let (mut node, mut from) = socket_pair().await;
            let (mut to, mut client) = socket_pair().await;
            node.write_all(&pattern(1000)).await.unwrap();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                got
            });
            let started = std::time::Instant::now();
            let idle = Duration::from_millis(200);
            let result = relay(way, &mut from, &mut to, 2000, idle).await;
            assert!(
                matches!(&result, Err(Broken::Node(e)) if e.kind() == io::ErrorKind::TimedOut),
                "{way:?}: {result:?}"
            );
            assert!(started.elapsed() >= idle);
            drop(to);
            assert_eq!(reader.await.unwrap(), pattern(1000), "{way:?}");
            // The node's connection is still open: only the limit ended the transfer.
            drop(node);
        }
    }
}
