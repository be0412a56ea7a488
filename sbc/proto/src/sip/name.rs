//! Header names: canonical and compact forms, compared case-insensitively (RFC 3261 §7.3.1,
//! §7.3.3, §20).

use std::fmt;

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal, $lower:literal $(, $compact_b:literal, $compact:literal)? ;)*) => {
        /// A header name. Names the parser knows get a variant; all others are `Other` and keep
        /// their spelling in the message buffer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( #[doc = concat!("`", $canonical, "`")] $variant, )*
            /// Any header the crate does not know by name; preserved byte for byte.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling (as printed by RFC 3261 §20).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $canonical, )*
                    Self::Other => "",
                }
            }

            /// The canonical name in lower case (how allowlists and header rules spell it);
            /// empty for `Other`.
            pub fn as_lower(self) -> &'static str {
                match self {
                    $( Self::$variant => const {
                        match std::str::from_utf8($lower) {
                            Ok(s) => s,
                            Err(_) => panic!("header names are ASCII"),
                        }
                    }, )*
                    Self::Other => "",
                }
            }

            /// The compact form (RFC 3261 §7.3.3 and extensions), if the header has one.
            pub fn compact(self) -> Option<&'static str> {
                match self {
                    $( $( Self::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            fn lookup_lower(lower: &[u8]) -> Self {
                match lower {
                    $( $lower $( | $compact_b )? => Self::$variant, )*
                    _ => Self::Other,
                }
            }
        }
    };
}

header_names! {
    Accept => "Accept", b"accept";
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    AcceptLanguage => "Accept-Language", b"accept-language";
    AlertInfo => "Alert-Info", b"alert-info";
    Allow => "Allow", b"allow";
    AllowEvents => "Allow-Events", b"allow-events", b"u", "u";
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    Authorization => "Authorization", b"authorization";
    CallId => "Call-ID", b"call-id", b"i", "i";
    CallInfo => "Call-Info", b"call-info";
    Contact => "Contact", b"contact", b"m", "m";
    ContentDisposition => "Content-Disposition", b"content-disposition";
    ContentEncoding => "Content-Encoding", b"content-encoding", b"e", "e";
    ContentLanguage => "Content-Language", b"content-language";
    ContentLength => "Content-Length", b"content-length", b"l", "l";
    ContentType => "Content-Type", b"content-type", b"c", "c";
    CSeq => "CSeq", b"cseq";
    Date => "Date", b"date";
    ErrorInfo => "Error-Info", b"error-info";
    Event => "Event", b"event", b"o", "o";
    Expires => "Expires", b"expires";
    From => "From", b"from", b"f", "f";
    InReplyTo => "In-Reply-To", b"in-reply-to";
    MaxForwards => "Max-Forwards", b"max-forwards";
    MimeVersion => "MIME-Version", b"mime-version";
    MinExpires => "Min-Expires", b"min-expires";
    MinSe => "Min-SE", b"min-se";
    Organization => "Organization", b"organization";
    Priority => "Priority", b"priority";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    RAck => "RAck", b"rack";
    Reason => "Reason", b"reason";
    RecordRoute => "Record-Route", b"record-route";
    ReferTo => "Refer-To", b"refer-to", b"r", "r";
    ReferredBy => "Referred-By", b"referred-by", b"b", "b";
    ReplyTo => "Reply-To", b"reply-to";
    Require => "Require", b"require";
    RetryAfter => "Retry-After", b"retry-after";
    Route => "Route", b"route";
    RSeq => "RSeq", b"rseq";
    Server => "Server", b"server";
    SessionExpires => "Session-Expires", b"session-expires", b"x", "x";
    Subject => "Subject", b"subject", b"s", "s";
    Supported => "Supported", b"supported", b"k", "k";
    Timestamp => "Timestamp", b"timestamp";
    To => "To", b"to", b"t", "t";
    Unsupported => "Unsupported", b"unsupported";
    UserAgent => "User-Agent", b"user-agent";
    Via => "Via", b"via", b"v", "v";
    Warning => "Warning", b"warning";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
}

impl HeaderName {
    /// Classifies a name as received; names are case-insensitive (RFC 3261 §7.3.1).
    pub fn from_bytes(name: &[u8]) -> Self {
        // Most names arrive in their canonical spelling: those need no lower-casing.
        match name {
            b"Via" => return Self::Via,
            b"From" => return Self::From,
            b"To" => return Self::To,
            b"Call-ID" => return Self::CallId,
            b"CSeq" => return Self::CSeq,
            b"Contact" => return Self::Contact,
            b"Max-Forwards" => return Self::MaxForwards,
            b"Content-Length" => return Self::ContentLength,
            b"Content-Type" => return Self::ContentType,
            _ => {}
        }
        if name.is_empty() || name.len() > 32 {
            return Self::Other;
        }
        let mut buf = [0u8; 32];
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let lower = &buf[..name.len()];
        // The names on nearly every message first, before the full table.
        match lower {
            b"via" | b"v" => Self::Via,
            b"from" | b"f" => Self::From,
            b"to" | b"t" => Self::To,
            b"call-id" | b"i" => Self::CallId,
            b"cseq" => Self::CSeq,
            b"contact" | b"m" => Self::Contact,
            b"max-forwards" => Self::MaxForwards,
            b"content-length" | b"l" => Self::ContentLength,
            _ => Self::lookup_lower(lower),
        }
    }

    /// Whether the header's grammar is a comma-separated list (RFC 3261 §7.3.1), so that a
    /// value may be split on top-level commas. Authorization-type headers are not: their commas
    /// separate auth-params.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Self::Accept
                | Self::AcceptEncoding
                | Self::AcceptLanguage
                | Self::AlertInfo
                | Self::Allow
                | Self::AllowEvents
                | Self::CallInfo
                | Self::Contact
                | Self::ContentEncoding
                | Self::ContentLanguage
                | Self::ErrorInfo
                | Self::InReplyTo
                | Self::ProxyRequire
                | Self::Reason
                | Self::RecordRoute
                | Self::Require
                | Self::Route
                | Self::Supported
                | Self::Unsupported
                | Self::Via
                | Self::Warning
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Other => "(extension header)",
            known => known.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_compact_forms() {
        let cases: &[(&str, HeaderName)] = &[
            ("Via", HeaderName::Via),
            ("v", HeaderName::Via),
            ("V", HeaderName::Via),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
            ("i", HeaderName::CallId),
            ("CALL-ID", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("cseq", HeaderName::CSeq),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("Min-SE", HeaderName::MinSe),
            ("C%6Fntact", HeaderName::Other),
            ("NewFangledHeader", HeaderName::Other),
            ("", HeaderName::Other),
        ];
        for (raw, want) in cases {
            assert_eq!(HeaderName::from_bytes(raw.as_bytes()), *want, "{raw}");
        }
        assert_eq!(HeaderName::Via.compact(), Some("v"));
        assert_eq!(HeaderName::CSeq.compact(), None);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }
}
