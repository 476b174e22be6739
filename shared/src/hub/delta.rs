//! Publications to subscribers that negotiated Fossil deltas (see [`crate::delta`]).
//!
//! Such a client applies every publication's data to its previous one when `delta` is set,
//! and on JSON wires it takes `data` as a JSON *string* holding the payload's text (whole or
//! delta), as Centrifugo sends it: the SDK keeps those exact bytes as its next delta base.
//! A delta goes to a client only when it holds the publication the delta was made against
//! (its `delta_base` is the previous offset of the same epoch); any other time, the payload
//! goes whole, which restarts the chain.

use bytes::Bytes;

use super::session::Subscription;
use crate::delta::fossil;
use crate::protocol::{Encoding, NotJson, Publication, Push, Wire};

/// The payload as a JSON string literal for a delta client on a JSON wire. Not UTF-8
/// (binary data): it cannot travel on JSON at all.
fn json_string(data: &[u8]) -> Result<Bytes, NotJson> {
    let text = std::str::from_utf8(data).map_err(|_| NotJson)?;
    serde_json::to_vec(text).map(Bytes::from).map_err(|_| NotJson)
}

/// The publication as a delta client receives it: whole (`delta` None) or as this delta.
/// On JSON, a delta that is not UTF-8 (it cut a multi-byte character) cannot be a JSON
/// string: None, and the caller sends the payload whole.
pub(crate) fn for_delta_client(
    publication: &Publication,
    delta: Option<&Bytes>,
    encoding: Encoding,
) -> Option<Result<Publication, NotJson>> {
    let (data, is_delta) = match (delta, encoding) {
        (Some(d), Encoding::Json) => (json_string(d).ok()?, true),
        (Some(d), Encoding::Protobuf) => (d.clone(), true),
        (None, Encoding::Json) => match json_string(&publication.data) {
            Ok(data) => (data, false),
            Err(e) => return Some(Err(e)),
        },
        (None, Encoding::Protobuf) => (publication.data.clone(), false),
    };
    Some(Ok(Publication { data, delta: is_delta, ..Publication::clone(publication) }))
}

/// Per-publication encodings for delta clients, one slot per wire: whole and as the delta.
pub(crate) struct DeltaEncoded {
    /// Shared, not copied: most publications have no delta client at all.
    channel: std::sync::Arc<str>,
    delta: Option<Bytes>,
    whole: [Option<Result<Bytes, NotJson>>; Wire::COUNT],
    /// None inside: the delta does not fit that wire, the whole form goes instead.
    as_delta: [Option<Option<Result<Bytes, NotJson>>>; Wire::COUNT],
}

impl DeltaEncoded {
    pub(crate) fn new(channel: &std::sync::Arc<str>, delta: Option<Bytes>) -> Self {
        DeltaEncoded { channel: channel.clone(), delta, whole: Default::default(), as_delta: Default::default() }
    }

    /// The bytes for a delta client on `wire`; `base_ok`: it holds the delta's base.
    pub(crate) fn get(&mut self, publication: &Publication, wire: Wire, base_ok: bool) -> Result<Bytes, NotJson> {
        if base_ok && self.delta.is_some() {
            let channel = &self.channel;
            let delta = self.delta.as_ref();
            let slot = self.as_delta[wire.index()].get_or_insert_with(|| {
                let p = for_delta_client(publication, delta, wire.encoding)?;
                Some(p.and_then(|p| wire.push(&push(channel, p))))
            });
            if let Some(bytes) = slot {
                return bytes.clone();
            }
        }
        let channel = &self.channel;
        self.whole[wire.index()]
            .get_or_insert_with(|| {
                let p = for_delta_client(publication, None, wire.encoding).unwrap_or(Err(NotJson))?;
                wire.push(&push(channel, p))
            })
            .clone()
    }
}

fn push(channel: &str, publication: Publication) -> Push {
    Push { channel: channel.to_owned(), r#pub: Some(publication), ..Default::default() }
}

/// Whether a delta made against offset - 1 of `epoch` may go to this subscription.
pub(crate) fn holds_base(sub: &Subscription, epoch: &str, offset: u64) -> bool {
    sub.delta && sub.delta_base != 0 && sub.delta_base.checked_add(1) == Some(offset) && *sub.epoch == *epoch
}

/// Recovered publications for a delta client, as Centrifugo sends them: the first whole, each
/// later one as a delta against the one before it where that is smaller. Per session, but
/// only on a successful recovery.
pub(crate) fn recovered(publications: Vec<Publication>, encoding: Encoding) -> Result<Vec<Publication>, NotJson> {
    let mut out = Vec::with_capacity(publications.len());
    let mut prev: Option<&Publication> = None;
    for p in &publications {
        let delta = prev
            .and_then(|prev| fossil::encode(&prev.data, &p.data))
            .filter(|d| d.len() < p.data.len())
            .map(Bytes::from);
        let sent = match for_delta_client(p, delta.as_ref(), encoding) {
            Some(sent) => sent?,
            None => for_delta_client(p, None, encoding).unwrap_or(Err(NotJson))?,
        };
        out.push(sent);
        prev = Some(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(data: &str, offset: u64) -> Publication {
        Publication { data: Bytes::from(data.to_owned()), offset, ..Default::default() }
    }

    #[test]
    fn json_clients_get_the_payload_as_a_string() {
        let p = publication(r#"{"a":"é\n"}"#, 1);
        let sent = for_delta_client(&p, None, Encoding::Json).unwrap().unwrap();
        let text: String = serde_json::from_slice(&sent.data).unwrap();
        assert_eq!(text.as_bytes(), &p.data[..]);
        assert!(!sent.delta);
    }

    #[test]
    fn a_delta_that_is_not_utf8_goes_whole_on_json() {
        let p = publication(r#""é""#, 2);
        let broken = Bytes::from_static(b"4\n1:\xc3;");
        assert!(for_delta_client(&p, Some(&broken), Encoding::Json).is_none());
        let sent = for_delta_client(&p, Some(&broken), Encoding::Protobuf).unwrap().unwrap();
        assert!(sent.delta);
    }

    #[test]
    fn recovered_publications_chain_from_the_first() {
        let doc = |n: u32| {
            format!(
                r#"{{"items":[{}],"n":{n}}}"#,
                (0..50).map(|i| format!("\"item-{i}\"")).collect::<Vec<_>>().join(",")
            )
        };
        let pubs: Vec<Publication> = (1..=3).map(|n| publication(&doc(n), n as u64)).collect();
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let sent = recovered(pubs.clone(), encoding).unwrap();
            assert_eq!(sent.iter().map(|p| p.delta).collect::<Vec<_>>(), [false, true, true]);
            let mut base: Vec<u8> = Vec::new();
            for (s, p) in sent.iter().zip(&pubs) {
                let data = match encoding {
                    Encoding::Json => serde_json::from_slice::<String>(&s.data).unwrap().into_bytes(),
                    Encoding::Protobuf => s.data.to_vec(),
                };
                base = if s.delta { fossil::apply(&base, &data, 1 << 20).unwrap() } else { data };
                assert_eq!(base, &p.data[..]);
            }
        }
    }
}
