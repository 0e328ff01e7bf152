//! File transfer services: XEP-0363 HTTP File Upload on `upload.<host>` ([`upload`]) and the
//! XEP-0065 SOCKS5 bytestreams proxy on `proxy.<host>` ([`proxy65`]). In-band bytestreams (XEP-0047) and Jingle file transfer (XEP-0234 over
//! XEP-0260/0261) need nothing from the server but faithful routing between full JIDs.

pub mod proxy65;
pub mod socks5;
pub mod upload;
