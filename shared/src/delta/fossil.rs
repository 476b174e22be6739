//! The Fossil delta format (fossil-scm.org's `delta.c`), which Centrifugo's `delta: "fossil"`
//! subscriptions carry and every SDK applies (centrifuge-js `fossil.ts`, centrifuge-python).
//!
//! A delta is text: the target length in base-64 digits and `\n`, then commands — `N@O,`
//! copies N bytes of the source from offset O, `N:<N bytes>` inserts N literal bytes — and
//! finally `C;`, a checksum of the target. [`encode`] finds copies through a rolling hash
//! over 16-byte blocks of the source (as Fossil does); [`apply`] checks everything a delta
//! says against its bounds, so a hostile delta yields an error, never a panic.
//!
//! Work is bounded: the source index costs half a byte per source byte, each output position
//! looks at most 250 source blocks (`MAX_CANDIDATES`), and inputs over [`MAX_INPUT`] are not
//! encoded at all (the caller sends the full payload).

/// Bytes per hashed block.
const NHASH: usize = 16;

/// Most source blocks tried per output position (Fossil's own bound).
const MAX_CANDIDATES: usize = 250;

/// Largest source or target [`encode`] works on; larger payloads go out whole.
pub const MAX_INPUT: usize = 1 << 20;

const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Appends `v` in Fossil's base-64 digits, most significant first.
fn put_int(mut v: usize, out: &mut Vec<u8>) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    let mut buf = [0u8; 12];
    let mut i = buf.len();
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = DIGITS[v & 63];
        v >>= 6;
    }
    out.extend_from_slice(&buf[i..]);
}

fn digit_count(v: usize) -> usize {
    let mut n = 1;
    let mut x = v >> 6;
    while x > 0 {
        n += 1;
        x >>= 6;
    }
    n
}

/// Fossil's checksum: the sum of the target's big-endian 32-bit words (a short tail counts
/// as the high bytes of one more word), wrapping.
pub fn checksum(data: &[u8]) -> u32 {
    let mut sums = [0u32; 4];
    let mut chunks = data.chunks_exact(4);
    for word in &mut chunks {
        for (s, b) in sums.iter_mut().zip(word) {
            *s = s.wrapping_add(u32::from(*b));
        }
    }
    let mut sum = sums[3].wrapping_add(sums[2] << 8).wrapping_add(sums[1] << 16).wrapping_add(sums[0] << 24);
    for (i, b) in chunks.remainder().iter().enumerate() {
        sum = sum.wrapping_add(u32::from(*b) << (24 - 8 * i));
    }
    sum
}

/// Adler-like rolling hash over a window of [`NHASH`] bytes.
struct Rolling {
    a: u16,
    b: u16,
    i: usize,
    window: [u8; NHASH],
}

impl Rolling {
    /// `bytes` holds at least [`NHASH`] bytes.
    fn new(bytes: &[u8]) -> Self {
        let mut window = [0u8; NHASH];
        window.copy_from_slice(&bytes[..NHASH]);
        let mut a = u16::from(window[0]);
        let mut b = a;
        for &c in &window[1..] {
            a = a.wrapping_add(u16::from(c));
            b = b.wrapping_add(a);
        }
        Rolling { a, b, i: 0, window }
    }

    fn push(&mut self, c: u8) {
        let old = self.window[self.i];
        self.window[self.i] = c;
        self.i = (self.i + 1) % NHASH;
        self.a = self.a.wrapping_sub(u16::from(old)).wrapping_add(u16::from(c));
        self.b = self.b.wrapping_sub((NHASH as u16).wrapping_mul(u16::from(old))).wrapping_add(self.a);
    }

    fn value(&self) -> u32 {
        u32::from(self.a) | (u32::from(self.b) << 16)
    }
}

/// The delta that turns `source` into `target`, or None when either is over [`MAX_INPUT`].
/// Any delta returned applies exactly: `apply(source, &encode(source, target)?) == target`.
pub fn encode(source: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    if source.len() > MAX_INPUT || target.len() > MAX_INPUT {
        return None;
    }
    let mut out = Vec::with_capacity(target.len() / 4 + 32);
    put_int(target.len(), &mut out);
    out.push(b'\n');
    let insert = |out: &mut Vec<u8>, bytes: &[u8]| {
        if !bytes.is_empty() {
            put_int(bytes.len(), out);
            out.push(b':');
            out.extend_from_slice(bytes);
        }
    };
    if source.len() <= NHASH {
        insert(&mut out, target);
        put_int(checksum(target) as usize, &mut out);
        out.push(b';');
        return Some(out);
    }

    // Index the source by the hash of each aligned block: `landmark[h]` is the last block
    // with hash h, `collide[block]` the one before it with the same hash.
    const NONE: u32 = u32::MAX;
    let blocks = source.len() / NHASH;
    let mut collide = vec![NONE; blocks];
    let mut landmark = vec![NONE; blocks];
    let mut block = 0;
    while block < blocks && (block + 1) * NHASH <= source.len() {
        let h = Rolling::new(&source[block * NHASH..]).value() as usize % blocks;
        collide[block] = landmark[h];
        landmark[h] = block as u32;
        block += 1;
    }

    let mut base = 0;
    while base + NHASH < target.len() {
        let mut rolling = Rolling::new(&target[base..]);
        let mut i = 0;
        loop {
            // Best copy found at this position: (count, source offset, literal bytes before).
            let mut best: Option<(usize, usize, usize)> = None;
            let mut candidate = landmark[rolling.value() as usize % blocks];
            let mut tries = 0;
            while candidate != NONE && tries < MAX_CANDIDATES {
                tries += 1;
                let src = candidate as usize * NHASH;
                let here = base + i;
                let forward = source[src..].iter().zip(&target[here..]).take_while(|(a, b)| a == b).count();
                let mut backward = 0;
                while backward + 1 < src && backward < i && source[src - backward - 1] == target[here - backward - 1] {
                    backward += 1;
                }
                let count = forward + backward;
                let offset = src - backward;
                let literal = i - backward;
                let cost = digit_count(literal) + digit_count(count) + digit_count(offset) + 3;
                if count >= cost && best.is_none_or(|(c, _, _)| count > c) {
                    best = Some((count, offset, literal));
                }
                candidate = collide[candidate as usize];
            }
            if let Some((count, offset, literal)) = best {
                insert(&mut out, &target[base..base + literal]);
                base += literal + count;
                put_int(count, &mut out);
                out.push(b'@');
                put_int(offset, &mut out);
                out.push(b',');
                break;
            }
            if base + i + NHASH >= target.len() {
                // No copy anywhere in the rest: all of it is literal.
                insert(&mut out, &target[base..]);
                base = target.len();
                break;
            }
            rolling.push(target[base + i + NHASH]);
            i += 1;
        }
    }
    insert(&mut out, &target[base.min(target.len())..]);
    put_int(checksum(target) as usize, &mut out);
    out.push(b';');
    Some(out)
}

/// Why a delta did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(pub &'static str);

/// Reads a base-64 integer; None when there is no digit or it overflows.
fn get_int(delta: &[u8], pos: &mut usize) -> Option<usize> {
    let start = *pos;
    let mut v: usize = 0;
    while let Some(&c) = delta.get(*pos) {
        let Some(d) = DIGITS.iter().position(|&x| x == c) else { break };
        v = v.checked_mul(64)?.checked_add(d)?;
        *pos += 1;
    }
    (*pos > start).then_some(v)
}

/// Applies a delta to `source`. Every count, offset and the checksum are checked; the
/// output never grows past the length the delta announces, nor past `limit`.
pub fn apply(source: &[u8], delta: &[u8], limit: usize) -> Result<Vec<u8>, ApplyError> {
    let mut pos = 0;
    let total = get_int(delta, &mut pos).ok_or(ApplyError("no target length"))?;
    if total > limit {
        return Err(ApplyError("target over the limit"));
    }
    if delta.get(pos) != Some(&b'\n') {
        return Err(ApplyError("target length not terminated by a newline"));
    }
    pos += 1;
    let mut out = Vec::with_capacity(total);
    while pos < delta.len() {
        let count = get_int(delta, &mut pos).ok_or(ApplyError("missing count"))?;
        let op = *delta.get(pos).ok_or(ApplyError("missing operator"))?;
        pos += 1;
        match op {
            b'@' => {
                let offset = get_int(delta, &mut pos).ok_or(ApplyError("missing copy offset"))?;
                if delta.get(pos) != Some(&b',') {
                    return Err(ApplyError("copy not terminated by a comma"));
                }
                pos += 1;
                let end = offset.checked_add(count).ok_or(ApplyError("copy out of range"))?;
                let bytes = source.get(offset..end).ok_or(ApplyError("copy past the end of the source"))?;
                if out.len() + bytes.len() > total {
                    return Err(ApplyError("copy past the announced length"));
                }
                out.extend_from_slice(bytes);
            }
            b':' => {
                let end = pos.checked_add(count).ok_or(ApplyError("insert out of range"))?;
                let bytes = delta.get(pos..end).ok_or(ApplyError("insert past the end of the delta"))?;
                if out.len() + bytes.len() > total {
                    return Err(ApplyError("insert past the announced length"));
                }
                out.extend_from_slice(bytes);
                pos = end;
            }
            b';' => {
                if out.len() != total {
                    return Err(ApplyError("target shorter than announced"));
                }
                if count != checksum(&out) as usize {
                    return Err(ApplyError("bad checksum"));
                }
                return Ok(out);
            }
            _ => return Err(ApplyError("unknown operator")),
        }
    }
    Err(ApplyError("unterminated delta"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(source: &[u8], target: &[u8]) -> Vec<u8> {
        let delta = encode(source, target).expect("within limits");
        assert_eq!(
            apply(source, &delta, MAX_INPUT).as_deref(),
            Ok(target),
            "delta {:?}",
            String::from_utf8_lossy(&delta)
        );
        delta
    }

    #[test]
    fn small_inputs_are_literal() {
        assert_eq!(roundtrip(b"", b""), b"0\n0;");
        assert_eq!(
            roundtrip(b"abc", b"abcd"),
            format!("4\n4:abcd{};", {
                let mut s = Vec::new();
                put_int(checksum(b"abcd") as usize, &mut s);
                String::from_utf8(s).unwrap()
            })
            .as_bytes()
        );
    }

    #[test]
    fn a_small_change_in_a_large_document_is_a_small_delta() {
        let doc: String =
            (0..100).map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"price\":{}}},", i * 3)).collect();
        let changed = doc.replace("\"price\":150", "\"price\":151");
        let delta = roundtrip(doc.as_bytes(), changed.as_bytes());
        assert!(delta.len() < 40, "{} bytes: {}", delta.len(), String::from_utf8_lossy(&delta));
    }

    #[test]
    fn repetitive_and_shifted_inputs() {
        roundtrip(&[b'a'; 1000], &[b'a'; 1500]);
        roundtrip(&[b'a'; 1500], &[b'a'; 10]);
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut dst = b"prefix".to_vec();
        dst.extend_from_slice(&src[100..4000]);
        dst.extend_from_slice(&src[..50]);
        roundtrip(&src, &dst);
        roundtrip(&src, b"");
        roundtrip(b"", &src);
    }

    #[test]
    fn oversized_inputs_are_not_encoded() {
        assert!(encode(&vec![0; MAX_INPUT + 1], b"x").is_none());
        assert!(encode(b"x", &vec![0; MAX_INPUT + 1]).is_none());
    }

    #[test]
    fn checksum_matches_fossil() {
        // Words: "abcd" = 0x61626364; tail "e" = 0x65 << 24.
        assert_eq!(checksum(b"abcd"), 0x6162_6364);
        assert_eq!(checksum(b"abcde"), 0x6162_6364u32.wrapping_add(0x6500_0000));
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn hostile_deltas_are_errors() {
        for bad in [
            &b""[..],
            b"5",
            b"5\n",
            b"5\n5@0,",
            b"5\n9999999999999@0,5;",
            b"5\n5:ab",
            b"~~~~~~~~~~~~~~~~~~~~\n",
            b"3\n3:abcX;",
            b"2\n1@99,1;",
            b"1\n1:a0;",
        ] {
            assert!(apply(b"hello", bad, 1 << 20).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(apply(b"", b"5\n5:hello0;", 4).is_err(), "over the caller's limit");
    }

    proptest::proptest! {
        /// Round trip on edits of a random document: insertions, deletions and overwrites.
        #[test]
        fn edits_round_trip(
            doc in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            edits in proptest::collection::vec((0usize..4000, 0usize..64, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)), 0..8),
        ) {
            let mut target = doc.clone();
            for (at, remove, insert) in edits {
                let at = at.min(target.len());
                let end = (at + remove).min(target.len());
                target.splice(at..end, insert);
            }
            let delta = encode(&doc, &target).expect("within limits");
            proptest::prop_assert_eq!(apply(&doc, &delta, MAX_INPUT), Ok(target));
        }

        /// Whatever the bytes, applying never panics.
        #[test]
        fn apply_never_panics(source in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                              delta in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = apply(&source, &delta, 1 << 16);
        }
    }
}
