//! A component connection while it performs the handshake: reading with a deadline and
//! failing with a stream error.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_stream::{
    stream_header, StreamError, StreamErrorCondition as Sec, StreamEvent, StreamReader,
    STREAM_CLOSE,
};

use crate::{random_id, NS_COMPONENT};

/// The connection during the handshake.
pub(crate) struct Conn {
    pub tcp: TcpStream,
    pub reader: StreamReader,
    pub buf: Vec<u8>,
    pub header_sent: bool,
}

impl Conn {
    pub(crate) async fn read(&mut self, timeout: Duration) -> Result<StreamEvent, String> {
        loop {
            match self.reader.next_event() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e.condition(), e.detail()).await),
            }
            let n = match tokio::time::timeout(timeout, self.tcp.read(&mut self.buf)).await {
                Err(_) => {
                    return Err(self
                        .fail(Sec::ConnectionTimeout, "handshake too slow")
                        .await)
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(0)) => return Err("closed before the handshake".into()),
                Ok(Ok(n)) => n,
            };
            if let Err(e) = self.reader.feed(&self.buf[..n]) {
                return Err(self.fail(e.condition(), e.detail()).await);
            }
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// Sends a stream error (after a header if none was sent) and closes; returns the reason.
    pub(crate) async fn fail(&mut self, cond: Sec, text: &str) -> String {
        let mut out = Vec::new();
        if !self.header_sent {
            let h = stream_header(NS_COMPONENT, None, None, &random_id(), None).replacen(
                " version='1.0'>",
                ">",
                1,
            );
            out.extend_from_slice(h.as_bytes());
            self.header_sent = true;
        }
        let err = StreamError::with_text(cond, text);
        out.extend_from_slice(&err.to_bytes());
        out.extend_from_slice(STREAM_CLOSE.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.tcp.write_all(&out).await;
            let _ = self.tcp.shutdown().await;
        })
        .await;
        err.to_string()
    }
}
