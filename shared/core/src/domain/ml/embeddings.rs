//! The stored format of one part of embeddings: what the featurize job writes to the blob store
//! for about a thousand items, and what training, inference and clustering read back.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "LBEM" | version u16 = 1 | dims u32 | embedded u32 | rejected u32
//! embedded x item id u64
//! embedded x dims x f16            (row-major, one row per item id, same order)
//! rejected x (item id u64 | reason length u32 | reason UTF-8)
//! ```
//!
//! Values are IEEE half floats: a 1,280-dim embedding takes 2.5 KB instead of 5 KB, and a CNN
//! embedding's useful precision (a few significant digits) survives half precision. Decoding
//! treats the bytes as hostile: every count is checked against the bytes that remain before
//! anything is allocated, so a truncated or forged part gives an error, never a panic or a
//! huge allocation.

use super::numeric::{f16_to_f32, f32_to_f16};

const MAGIC: &[u8; 4] = b"LBEM";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 4 + 2 + 4 + 4 + 4;
/// Reasons are for people reading a run's errors; a longer one is cut (at a character boundary)
/// so a hostile image's decoder message cannot bloat a part.
pub const MAX_REASON_BYTES: usize = 1024;

/// An item the backbone could not embed, with why (e.g. "not an image", "30000 x 30000 is too
/// large to decode").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub item: u64,
    pub reason: String,
}

/// A decoded part: the embedded items in stored order with their embeddings, and the rejected
/// items with their reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    dims: usize,
    items: Vec<u64>,
    values: Vec<f32>,
    rejected: Vec<Rejected>,
}

impl Part {
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The embedded items' ids, in stored order.
    pub fn items(&self) -> &[u64] {
        &self.items
    }

    /// The embedding of the `index`-th embedded item (`index < items().len()`).
    pub fn embedding(&self, index: usize) -> &[f32] {
        &self.values[index * self.dims..(index + 1) * self.dims]
    }

    /// Each embedded item with its embedding, in stored order.
    pub fn embeddings(&self) -> impl Iterator<Item = (u64, &[f32])> {
        self.items
            .iter()
            .copied()
            .zip(self.values.chunks_exact(self.dims.max(1)))
    }

    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    #[error("item {item} has {got} values, the part holds {dims}-dimensional embeddings")]
    WrongDims { item: u64, got: usize, dims: usize },
    #[error("embeddings need at least one dimension")]
    ZeroDims,
    #[error("a part holds at most {max} items, not {got}")]
    TooManyItems { got: usize, max: usize },
    #[error("not an embeddings part (bad magic)")]
    BadMagic,
    #[error("embeddings part version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u16),
    #[error("the embeddings part is truncated: {0}")]
    Truncated(&'static str),
    #[error("a rejection reason is not UTF-8")]
    BadReason,
    #[error("{0} bytes follow the end of the embeddings part")]
    TrailingBytes(usize),
}

/// Encodes one part; `entries` are the items in the order they should be read back, each with
/// its embedding of `dims` values or the reason it has none.
pub fn encode_part(
    dims: usize,
    entries: &[(u64, Result<Vec<f32>, String>)],
) -> Result<Vec<u8>, PartError> {
    let dims_u32 = u32::try_from(dims)
        .ok()
        .filter(|d| *d > 0)
        .ok_or(PartError::ZeroDims)?;
    let embedded: Vec<(u64, &Vec<f32>)> = entries
        .iter()
        .filter_map(|(item, result)| result.as_ref().ok().map(|values| (*item, values)))
        .collect();
    let rejected: Vec<(u64, &str)> = entries
        .iter()
        .filter_map(|(item, result)| result.as_ref().err().map(|reason| (*item, reason.as_str())))
        .collect();
    let count = |n: usize| {
        u32::try_from(n).map_err(|_| PartError::TooManyItems {
            got: n,
            max: u32::MAX as usize,
        })
    };
    let embedded_count = count(embedded.len())?;
    let rejected_count = count(rejected.len())?;
    if let Some((item, values)) = embedded.iter().find(|(_, values)| values.len() != dims) {
        return Err(PartError::WrongDims {
            item: *item,
            got: values.len(),
            dims,
        });
    }

    let mut out = Vec::with_capacity(HEADER_LEN + embedded.len() * (8 + 2 * dims));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&dims_u32.to_le_bytes());
    out.extend_from_slice(&embedded_count.to_le_bytes());
    out.extend_from_slice(&rejected_count.to_le_bytes());
    for (item, _) in &embedded {
        out.extend_from_slice(&item.to_le_bytes());
    }
    for (_, values) in &embedded {
        for value in values.iter() {
            out.extend_from_slice(&f32_to_f16(*value).to_le_bytes());
        }
    }
    for (item, reason) in rejected {
        let reason = cut_at_char_boundary(reason, MAX_REASON_BYTES);
        out.extend_from_slice(&item.to_le_bytes());
        // At most MAX_REASON_BYTES, so it fits.
        out.extend_from_slice(&(reason.len() as u32).to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
    }
    Ok(out)
}

fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads bytes off the front of a slice, failing (never panicking) when too few remain.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PartError> {
        if self.bytes.len() < n {
            return Err(PartError::Truncated(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PartError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, PartError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PartError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, PartError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

/// Decodes a part written by [`encode_part`].
pub fn decode_part(bytes: &[u8]) -> Result<Part, PartError> {
    let mut reader = Reader { bytes };
    if reader.take(4, "header")? != MAGIC {
        return Err(PartError::BadMagic);
    }
    let version = reader.u16("header")?;
    if version != VERSION {
        return Err(PartError::UnsupportedVersion(version));
    }
    let dims = reader.u32("header")? as usize;
    let embedded = reader.u32("header")? as usize;
    let rejected = reader.u32("header")? as usize;
    if dims == 0 {
        return Err(PartError::ZeroDims);
    }
    // Checked before allocating: the embedded rows and the smallest possible rejections must
    // fit in what is left (u128 arithmetic cannot overflow from u32 counts).
    let row_bytes = 8 + 2 * dims as u128;
    let needed = embedded as u128 * row_bytes + rejected as u128 * 12;
    if needed > reader.bytes.len() as u128 {
        return Err(PartError::Truncated(
            "fewer bytes than the counts in the header need",
        ));
    }

    let ids = reader.take(embedded * 8, "item ids")?;
    let items: Vec<u64> = ids
        .chunks_exact(8)
        .map(|chunk| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            u64::from_le_bytes(raw)
        })
        .collect();
    let raw_values = reader.take(embedded * dims * 2, "values")?;
    let values: Vec<f32> = raw_values
        .chunks_exact(2)
        .map(|pair| f16_to_f32(u16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    let mut rejections = Vec::with_capacity(rejected);
    for _ in 0..rejected {
        let item = reader.u64("rejections")?;
        let len = reader.u32("rejections")? as usize;
        let reason = reader.take(len, "a rejection reason")?;
        let reason = std::str::from_utf8(reason).map_err(|_| PartError::BadReason)?;
        rejections.push(Rejected {
            item,
            reason: reason.to_owned(),
        });
    }
    if !reader.bytes.is_empty() {
        return Err(PartError::TrailingBytes(reader.bytes.len()));
    }
    Ok(Part {
        dims,
        items,
        values,
        rejected: rejections,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn sample_entries() -> Vec<(u64, Result<Vec<f32>, String>)> {
        vec![
            (10, Ok(vec![0.5, -1.25, 3.0])),
            (11, Err("not an image".to_owned())),
            (12, Ok(vec![0.0, 1e-3, 100.0])),
            (13, Err("30000 x 30000 is too large to decode".to_owned())),
        ]
    }

    #[test]
    fn a_part_reads_back_its_items_embeddings_and_rejections() {
        let bytes = encode_part(3, &sample_entries()).unwrap();
        let part = decode_part(&bytes).unwrap();
        assert_eq!(part.dims(), 3);
        assert_eq!(part.items(), &[10, 12]);
        assert_eq!(part.embedding(0), &[0.5, -1.25, 3.0]);
        let second = part.embedding(1);
        assert!((second[1] - 1e-3).abs() < 1e-6 && second[2] == 100.0);
        assert_eq!(
            part.rejected(),
            &[
                Rejected {
                    item: 11,
                    reason: "not an image".to_owned()
                },
                Rejected {
                    item: 13,
                    reason: "30000 x 30000 is too large to decode".to_owned()
                },
            ]
        );
        assert_eq!(part.embeddings().count(), 2);
    }

    #[test]
    fn a_part_of_a_thousand_1280_dim_embeddings_takes_about_2_6_kb_an_item() {
        let entries: Vec<_> = (0..1000u64)
            .map(|i| (i, Ok(vec![i as f32 / 1000.0; 1280])))
            .collect();
        let bytes = encode_part(1280, &entries).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 1000 * (8 + 2 * 1280));
    }

    #[test]
    fn an_embedding_of_the_wrong_length_is_refused_when_encoding() {
        let entries = vec![(5, Ok(vec![1.0, 2.0]))];
        assert_eq!(
            encode_part(3, &entries),
            Err(PartError::WrongDims {
                item: 5,
                got: 2,
                dims: 3
            })
        );
        assert_eq!(encode_part(0, &[]), Err(PartError::ZeroDims));
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let bytes = encode_part(1, &[(1, Err(reason))]).unwrap();
        let part = decode_part(&bytes).unwrap();
        assert_eq!(part.rejected()[0].reason.len(), MAX_REASON_BYTES);
    }

    #[test]
    fn every_truncation_of_a_part_is_an_error() {
        let bytes = encode_part(3, &sample_entries()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode_part(&bytes[..len]).is_err(), "truncated at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_part(&longer), Err(PartError::TrailingBytes(1)));
    }

    #[test]
    fn a_header_claiming_billions_of_items_is_refused_before_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_part(&bytes), Err(PartError::Truncated(_))));
    }

    #[test]
    fn bytes_of_another_format_or_version_are_refused() {
        assert_eq!(
            decode_part(b"PK\x03\x04 not ours at all"),
            Err(PartError::BadMagic)
        );
        let mut bytes = encode_part(1, &[]).unwrap();
        bytes[4] = 2;
        assert_eq!(decode_part(&bytes), Err(PartError::UnsupportedVersion(2)));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_part(&bytes);
        }

        #[test]
        fn corrupting_a_valid_part_never_panics(index in 0usize..200, byte in any::<u8>()) {
            let mut bytes = encode_part(3, &sample_entries()).unwrap();
            let index = index % bytes.len();
            bytes[index] = byte;
            let _ = decode_part(&bytes);
        }
    }
}
