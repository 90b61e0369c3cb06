//! One client connection: a reader that dispatches messages, and a writer fed by two queues — a bounded one for
//! session events (the pumps wait on it, never the sessions) and an unbounded one for responses and the few
//! control messages (server requests, resolutions, lag notices).

use std::sync::Arc;

use futures_util::Sink;
use futures_util::SinkExt;
use futures_util::Stream;
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;
use tokio_util::codec::FramedRead;
use tokio_util::codec::FramedWrite;
use tokio_util::codec::LinesCodec;
use tokio_util::codec::LinesCodecError;
use tokio_util::sync::CancellationToken;

use codepilot::BoxFuture;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::codes;

use crate::Daemon;
use crate::rpc::Peer;
use crate::session::Subscriber;
use crate::wire;

/// What sessions hold of a connection: its queues.
struct ConnHandle {
    id: u64,
    events: mpsc::Sender<Arc<str>>,
    control: mpsc::UnboundedSender<Arc<str>>,
    closed: CancellationToken,
}

impl Subscriber for ConnHandle {
    fn id(&self) -> u64 {
        self.id
    }

    fn send_event(&self, line: Arc<str>) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.events.send(line).await.is_ok() })
    }

    fn send_control(&self, line: Arc<str>) {
        // A closed connection drops it; its subscriptions end with it.
        let _ = self.control.send(line);
    }

    fn closed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.closed.cancelled())
    }
}

/// A line, or the news that one was too long (and is being skipped).
pub(crate) enum Line {
    Text(String),
    TooLong,
}

/// [`LinesCodec`] with a length limit that skips an overlong line and goes on, where `FramedRead` would end the
/// stream at the codec's error.
struct BoundedLines(LinesCodec);

impl Decoder for BoundedLines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut bytes::BytesMut) -> Result<Option<Line>, std::io::Error> {
        match self.0.decode(buf) {
            Ok(line) => Ok(line.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Line::TooLong)),
            Err(LinesCodecError::Io(e)) => Err(e),
        }
    }

    fn decode_eof(&mut self, buf: &mut bytes::BytesMut) -> Result<Option<Line>, std::io::Error> {
        match self.0.decode_eof(buf) {
            Ok(line) => Ok(line.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Line::TooLong)),
            Err(LinesCodecError::Io(e)) => Err(e),
        }
    }
}

/// Serves one connection until the peer closes it (or the daemon shuts down): one JSON-RPC message per line.
pub async fn serve_connection<R, W>(daemon: Daemon, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let max = daemon.config().max_message_bytes;
    let inbound = FramedRead::new(reader, BoundedLines(LinesCodec::new_with_max_length(max)));
    let outbound =
        SinkExt::<String>::sink_map_err(FramedWrite::new(writer, LinesCodec::new()), |e| {
            std::io::Error::other(e.to_string())
        });
    serve_messages(daemon, inbound, outbound, true).await;
}

/// Serves one connection of whole messages (lines, or WebSocket text frames) until `inbound` ends.
pub(crate) async fn serve_messages<I, O>(daemon: Daemon, mut inbound: I, outbound: O, local: bool)
where
    I: Stream<Item = std::io::Result<Line>> + Unpin + Send,
    O: Sink<String, Error = std::io::Error> + Unpin + Send + 'static,
{
    let (events_tx, events_rx) = mpsc::channel(daemon.config().queue);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let closed = daemon.shutdown_token().child_token();
    let handle = Arc::new(ConnHandle {
        id: daemon.next_connection_id(),
        events: events_tx,
        control: control_tx,
        closed: closed.clone(),
    });
    let writing = tokio::spawn(write_loop(outbound, events_rx, control_rx, closed.clone()));
    let mut peer = Peer::new(Arc::clone(&handle) as Arc<dyn Subscriber>, local);
    let max = daemon.config().max_message_bytes;
    let too_large = || {
        let error = RpcError::new(
            codes::TOO_LARGE,
            format!("message larger than {max} bytes; it was discarded"),
        );
        wire::error(None, &error)
    };
    loop {
        let next = tokio::select! {
            () = closed.cancelled() => break,
            next = inbound.next() => next,
        };
        let reply = match next {
            None => break,
            Some(Ok(Line::Text(line))) if line.trim().is_empty() => continue,
            Some(Ok(Line::Text(line))) if line.len() > max => too_large(),
            Some(Ok(Line::Text(line))) => match daemon.handle_line(&mut peer, &line).await {
                Some(reply) => reply,
                None => continue,
            },
            Some(Ok(Line::TooLong)) => too_large(),
            Some(Err(e)) => {
                tracing::debug!("connection {} read error: {e}", handle.id);
                break;
            }
        };
        handle.send_control(reply.into());
    }
    closed.cancel();
    daemon.disconnected(&mut peer);
    let _ = writing.await;
}

async fn write_loop<O>(
    mut out: O,
    mut events: mpsc::Receiver<Arc<str>>,
    mut control: mpsc::UnboundedReceiver<Arc<str>>,
    closed: CancellationToken,
) where
    O: Sink<String, Error = std::io::Error> + Unpin,
{
    loop {
        let line = tokio::select! {
            biased;
            line = control.recv() => line,
            line = events.recv() => line,
            () = closed.cancelled() => {
                // Send what is already queued for the peer (the last responses), then stop.
                while let Ok(line) = control.try_recv() {
                    if out.feed(line.to_string()).await.is_err() {
                        break;
                    }
                }
                let _ = out.flush().await;
                let _ = out.close().await;
                return;
            }
        };
        let Some(line) = line else { return };
        if out.send(line.to_string()).await.is_err() {
            closed.cancel();
            return;
        }
    }
}
