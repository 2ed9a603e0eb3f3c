//! The two bits of DER the token interface needs: unwrapping `CKA_EC_POINT`
//! and encoding a raw `r‖s` ECDSA signature as `ECDSA-Sig-Value`.

/// Returns the uncompressed point `04 ‖ X ‖ Y` of `point_len` bytes, whether
/// the token returned it bare or (as PKCS#11 specifies, and SoftHSM2 does)
/// wrapped in a DER OCTET STRING. `None` for anything else.
pub fn unwrap_ec_point(data: &[u8], point_len: usize) -> Option<&[u8]> {
    let inner = if data.len() == point_len + 2 && data[0] == 0x04 && data[1] as usize == point_len {
        &data[2..]
    } else if data.len() == point_len + 3
        && data[0] == 0x04
        && data[1] == 0x81
        && data[2] as usize == point_len
    {
        &data[3..]
    } else if data.len() == point_len {
        data
    } else {
        return None;
    };
    (inner[0] == 0x04).then_some(inner)
}

/// Encodes a raw ECDSA signature (`r ‖ s`, two equal-length big-endian
/// scalars) as the DER `SEQUENCE { INTEGER r, INTEGER s }` X.509 uses.
pub fn ecdsa_sig_from_raw(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 6);
    push_uint(&mut body, r);
    push_uint(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(0x30);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn push_uint(out: &mut Vec<u8>, bytes: &[u8]) {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let trimmed = if first == bytes.len() {
        &[0u8][..]
    } else {
        &bytes[first..]
    };
    let pad = trimmed[0] & 0x80 != 0;
    out.push(0x02);
    push_len(out, trimmed.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_and_bare_points_unwrap_to_the_same_point() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&point);
        assert_eq!(unwrap_ec_point(&wrapped, 65), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point, 65), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point[..64], 65), None);
        let mut compressed = point.clone();
        compressed[0] = 0x02;
        assert_eq!(unwrap_ec_point(&compressed, 65), None);
    }

    #[test]
    fn signature_integers_are_minimal_and_positive() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x00;
        raw[1] = 0x01; // r has a leading zero to strip
        raw[32] = 0x80; // s needs a zero pad
        let der = ecdsa_sig_from_raw(&raw);
        assert_eq!(der[0], 0x30);
        assert_eq!(der[1] as usize, der.len() - 2);
        assert_eq!(&der[2..4], &[0x02, 31]);
        assert_eq!(der[4], 0x01);
        let s_at = 4 + 31;
        assert_eq!(&der[s_at..s_at + 3], &[0x02, 33, 0x00]);
        assert_eq!(der[s_at + 3], 0x80);
    }

    #[test]
    fn zero_scalar_encodes_as_single_zero() {
        let der = ecdsa_sig_from_raw(&[0u8; 64]);
        assert_eq!(der, vec![0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
    }
}
