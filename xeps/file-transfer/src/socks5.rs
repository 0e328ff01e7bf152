//! The server side of the SOCKS5 handshake as XEP-0065 §6.2 uses it (RFC 1928 subset): no
//! authentication, CONNECT only, and a domain-name address carrying the hex SHA-1 that pairs
//! the two parties' connections; the port must be 0.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The client spoke something else than the XEP-0065 subset of SOCKS5.
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

/// Runs the handshake; returns the destination address (the pairing hash, lower-cased).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<String, HandshakeError> {
    // Greeting: VER NMETHODS METHODS...
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(HandshakeError::Protocol("not SOCKS version 5"));
    }
    let mut methods = vec![0u8; head[1] as usize];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        // X'FF': no acceptable method (RFC 1928 §3).
        s.write_all(&[5, 0xff]).await?;
        return Err(HandshakeError::Protocol(
            "client does not offer 'no authentication'",
        ));
    }
    s.write_all(&[5, 0]).await?;
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 || req[2] != 0 {
        return Err(HandshakeError::Protocol("malformed request"));
    }
    if req[1] != 1 {
        reply(s, 7, b"").await?; // command not supported
        return Err(HandshakeError::Protocol("only CONNECT is supported"));
    }
    if req[3] != 3 {
        reply(s, 8, b"").await?; // address type not supported
        return Err(HandshakeError::Protocol(
            "address must be a domain name (the SHA-1)",
        ));
    }
    let mut len = [0u8; 1];
    s.read_exact(&mut len).await?;
    let mut addr = vec![0u8; len[0] as usize];
    s.read_exact(&mut addr).await?;
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    let dst =
        String::from_utf8(addr).map_err(|_| HandshakeError::Protocol("address is not UTF-8"))?;
    if dst.len() != 40 || !dst.bytes().all(|b| b.is_ascii_hexdigit()) {
        reply(s, 4, dst.as_bytes()).await?; // host unreachable
        return Err(HandshakeError::Protocol("address is not a hex SHA-1"));
    }
    let dst = dst.to_ascii_lowercase();
    reply(s, 0, dst.as_bytes()).await?;
    Ok(dst)
}

/// VER REP RSV ATYP=domain BND.ADDR BND.PORT=0 (§6.2: the proxy echoes the address).
async fn reply<S: AsyncWrite + Unpin>(s: &mut S, code: u8, addr: &[u8]) -> io::Result<()> {
    let mut out = vec![5, code, 0, 3, addr.len() as u8];
    out.extend_from_slice(addr);
    out.extend_from_slice(&[0, 0]);
    s.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client(bytes: Vec<u8>) -> (Result<String, HandshakeError>, Vec<u8>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        b.write_all(&bytes).await.unwrap();
        let r = accept(&mut a).await;
        drop(a);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        (r, out)
    }

    fn request(addr: &str) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 5, 1, 0, 3, addr.len() as u8];
        v.extend_from_slice(addr.as_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[tokio::test]
    async fn accepts_the_xep0065_subset() {
        let hash = "A".repeat(40);
        let (r, out) = client(request(&hash)).await;
        assert_eq!(r.unwrap(), "a".repeat(40));
        assert_eq!(&out[..2], &[5, 0]);
        assert_eq!(&out[2..7], &[5, 0, 0, 3, 40]);
    }

    #[tokio::test]
    async fn refuses_other_methods_commands_and_addresses() {
        let (r, out) = client(vec![5, 1, 2]).await;
        assert!(r.is_err());
        assert_eq!(out, vec![5, 0xff]);
        let (r, _) = client(vec![4, 1, 0]).await;
        assert!(r.is_err());
        let (r, out) = client(request("not-a-hash")).await;
        assert!(r.is_err());
        assert_eq!(out[3], 4);
        let mut bind = request(&"a".repeat(40));
        bind[4] = 2; // BIND
        let (r, out) = client(bind).await;
        assert!(r.is_err());
        assert_eq!(out[3], 7);
    }
}
