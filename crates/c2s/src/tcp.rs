//! The TCP link: RFC 6120 XML streams over plain TCP, STARTTLS or direct TLS (XEP-0368),
//! framed by `tern-stream`'s incremental reader.

use std::io;
use std::time::Duration;

use rustls::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tern_sasl::ChannelBindings;
use tern_stream::{
    stream_header, Limits, ParseError, StreamEvent, StreamReader, NS_CLIENT, STREAM_CLOSE,
};

use crate::link::{Framing, Header, Link, LinkError, Outbox};
use crate::transport::Transport;
use crate::TlsSettings;

/// Size of the per-connection read buffer.
/// Read buffer of a TCP link, held for the connection's life. Small: TLS records are buffered
/// by rustls already, so this only bounds how much plaintext one read hands over, and every
/// idle session pays for it (docs/benchmarks.md: 4 KiB → 1 KiB saved ~3 KiB per session).
const READ_CHUNK: usize = 1024;

/// A client connection over TCP.
pub(crate) struct TcpLink {
    /// `None` only while a STARTTLS handshake holds the socket.
    io: Option<Transport>,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl TcpLink {
    pub(crate) fn new(io: Transport, limits: Limits) -> Self {
        TcpLink {
            io: Some(io),
            reader: StreamReader::new(limits, NS_CLIENT),
            buf: vec![0; READ_CHUNK],
        }
    }

    fn io(&mut self) -> io::Result<&mut Transport> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed"))
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let io = self.io()?;
        io.write_all(bytes).await?;
        io.flush().await
    }
}

#[async_trait::async_trait]
impl Link for TcpLink {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn is_secure(&self) -> bool {
        self.io.as_ref().is_some_and(Transport::is_tls)
    }

    async fn receive(&mut self) -> Result<usize, LinkError> {
        let Some(io) = self.io.as_mut() else {
            return Err(LinkError::Closed);
        };
        // `read` is cancel-safe, and feeding happens only once it has returned.
        let n = io.read(&mut self.buf).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        self.reader.feed(&self.buf[..n])?;
        Ok(n)
    }

    fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        self.reader.next_event()
    }

    fn restart(&mut self) {
        self.reader.restart();
    }

    async fn write(&mut self, out: &Outbox) -> io::Result<()> {
        self.write_all(out.bytes()).await
    }

    async fn send_header(&mut self, h: &Header<'_>) -> io::Result<()> {
        let header = stream_header(NS_CLIENT, h.from, h.to, h.id, Some("en"));
        self.write_all(header.as_bytes()).await
    }

    async fn close(&mut self, out: &Outbox) -> io::Result<()> {
        let mut bytes = out.bytes().to_vec();
        bytes.extend_from_slice(STREAM_CLOSE.as_bytes());
        self.write_all(&bytes).await?;
        self.io()?.shutdown().await
    }

    fn can_starttls(&self) -> bool {
        matches!(self.io, Some(Transport::Plain(_)))
    }

    async fn starttls(&mut self, tls: &TlsSettings, timeout: Duration) -> bool {
        let Some(Transport::Plain(tcp)) = self.io.take() else {
            return false;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => {
                self.io = Some(Transport::Tls(Box::new(s)));
                // RFC 6120 §5.4.3.3: the stream restarts on the encrypted channel.
                self.reader.restart();
                true
            }
            Ok(Err(e)) => {
                tracing::info!("TLS handshake failed: {e}");
                false
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                false
            }
        }
    }

    /// tls-exporter on TLS 1.3 (RFC 9266), and tls-server-end-point (RFC 5929) whenever the
    /// certificate is known.
    fn channel_bindings(&self, tls: Option<&TlsSettings>) -> ChannelBindings {
        let mut b = ChannelBindings::default();
        let (Some(Transport::Tls(s)), Some(settings)) = (self.io.as_ref(), tls) else {
            return b;
        };
        let (_, sc) = s.get_ref();
        if sc.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
            if let Ok(out) = sc.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            {
                b.tls_exporter = Some(out.to_vec());
            }
        }
        b.tls_server_end_point = (settings.end_point_hash)(sc.server_name());
        b
    }
}
