//! The fixed part of a GGUF file's header: magic, version and counts. Shared by the worker
//! (which checks a file before llama.cpp maps it, so a file of the wrong format or cut short
//! gets a message that says so, not just "null") and by the daemon's fuzz targets. The rest
//! of the header (metadata and tensor list) is read by [`meta`], written by [`write`].

pub mod meta;
pub mod write;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub tensors: u64,
    pub metadata_entries: u64,
    pub file_bytes: u64,
}

/// Parses the first 24 bytes of a GGUF file.
pub fn parse_header(head: &[u8], file_bytes: u64) -> Result<Header, String> {
    if head.len() < 4 || &head[..4] != b"GGUF" {
        return Err(format!(
            "not a GGUF file (it starts with {:02x?}, GGUF files start with \"GGUF\")",
            &head[..head.len().min(4)]
        ));
    }
    if head.len() < 24 {
        return Err(format!(
            "truncated: {} bytes, shorter than a GGUF header",
            file_bytes
        ));
    }
    let version = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (2 or 3 are)"
        ));
    }
    let tensors = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let metadata_entries = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    // A real model has at least a few tensors; absurd counts mean a damaged header, and
    // llama.cpp would try to allocate for them.
    if tensors == 0 || tensors > 1 << 20 || metadata_entries > 1 << 20 {
        return Err(format!(
            "damaged header: {tensors} tensors, {metadata_entries} metadata entries"
        ));
    }
    Ok(Header {
        version,
        tensors,
        metadata_entries,
        file_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, tensors: u64, kv: u64) -> Vec<u8> {
        let mut h = b"GGUF".to_vec();
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&tensors.to_le_bytes());
        h.extend_from_slice(&kv.to_le_bytes());
        h
    }

    #[test]
    fn accepts_a_plausible_header() {
        let h = parse_header(&header(3, 201, 30), 1000).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.tensors, 201);
    }

    #[test]
    fn refuses_other_formats_and_damage() {
        assert!(
            parse_header(b"RKLLM\0\0\0", 8)
                .unwrap_err()
                .starts_with("not a GGUF file")
        );
        assert!(
            parse_header(b"", 0)
                .unwrap_err()
                .starts_with("not a GGUF file")
        );
        assert!(
            parse_header(b"GGUF\x03\0", 6)
                .unwrap_err()
                .starts_with("truncated")
        );
        assert!(
            parse_header(&header(9, 1, 1), 24)
                .unwrap_err()
                .contains("version 9")
        );
        assert!(
            parse_header(&header(3, 0, 1), 24)
                .unwrap_err()
                .contains("damaged")
        );
        assert!(
            parse_header(&header(3, u64::MAX, 1), 24)
                .unwrap_err()
                .contains("damaged")
        );
    }
}
