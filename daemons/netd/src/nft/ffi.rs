//! The shims over `nftnl_sys` (libnftnl's own setters) for what the nftnl
//! crate cannot express: loads into the 32-bit registers, set keys with
//! nft's concatenated type ids, nft's userdata TLVs and the table message
//! that carries the comment. The one module of hearth-netd besides
//! [`crate::netlink`] with `unsafe` code; every block says why it holds.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

use nftnl::expr::{Expression, Meta};
use nftnl::nftnl_sys as sys;
use nftnl::set::{Set, SetKey};
use nftnl::{MsgType, NlMsg, Rule};

use super::{FAMILY_INET, TABLE_C};
use crate::netlink as nl;

/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
const NFT_PAYLOAD_TRANSPORT: u32 = 2;

// nft's datatype ids, for `nft list` to print the sets' key types.
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
const fn concat(types: &[u32]) -> u32 {
    let mut acc = 0;
    let mut i = 0;
    while i < types.len() {
        acc = (acc << 6) | types[i];
        i += 1;
    }
    acc
}

/// Aborts like nftnl does when libnftnl cannot allocate (the objects are a
/// few bytes: only an exhausted heap fails, and there is no recovering).
fn alloc_or_abort<T>(p: *mut T) -> NonNull<T> {
    NonNull::new(p).unwrap_or_else(|| std::process::abort())
}

fn expr(name: &CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: `name` is a NUL-terminated expression name libnftnl knows.
    alloc_or_abort(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
}

/// `meta <key>` loaded into register `dreg` (nftnl's [`Meta`] always loads
/// into `NFT_REG_1`; concatenations need the following 32-bit registers).
pub(super) struct MetaInto(pub(super) Meta, pub(super) u32);

impl Expression for MetaInto {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"meta");
        // SAFETY: `e` is a live meta expression; both attributes are u32s.
        unsafe {
            sys::nftnl_expr_set_u32(
                e.as_ptr(),
                sys::NFTNL_EXPR_META_KEY as u16,
                self.0.to_raw_key(),
            );
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_DREG as u16, self.1);
        }
        e
    }
}

/// `th dport` (2 bytes at offset 2 of the transport header) loaded into
/// register `.0`.
pub(super) struct ThDportInto(pub(super) u32);

impl Expression for ThDportInto {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"payload");
        // SAFETY: `e` is a live payload expression; all attributes are u32s.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, self.0);
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_PAYLOAD_BASE as u16,
                NFT_PAYLOAD_TRANSPORT,
            );
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, 2);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, 2);
        }
        e
    }
}

/// A set key of nft datatype `TYPE` (concatenations: the types shifted by 6
/// bits each, as nft computes them) and `LEN` bytes (each field of a
/// concatenation padded to 4 bytes).
pub(super) struct Key<const TYPE: u32, const LEN: u32>(pub(super) Vec<u8>);

impl<const TYPE: u32, const LEN: u32> SetKey for Key<TYPE, LEN> {
    const TYPE: u32 = TYPE;
    const LEN: u32 = LEN;

    fn data(&self) -> Box<[u8]> {
        self.0.clone().into_boxed_slice()
    }
}

/// `ifname`.
pub(super) type IfKey = Key<TYPE_IFNAME, 16>;
/// `ifname . ifname`.
pub(super) type AnyKey = Key<{ concat(&[TYPE_IFNAME, TYPE_IFNAME]) }, 32>;
/// `ifname . ifname . inet_proto`.
pub(super) type ProtoKey = Key<{ concat(&[TYPE_IFNAME, TYPE_IFNAME, TYPE_INET_PROTOCOL]) }, 36>;
/// `ifname . ifname . inet_proto . inet_service`.
pub(super) type PortKey = Key<
    {
        concat(&[
            TYPE_IFNAME,
            TYPE_IFNAME,
            TYPE_INET_PROTOCOL,
            TYPE_INET_SERVICE,
        ])
    },
    40,
>;
/// `ifname . inet_proto . inet_service`.
pub(super) type ServiceKey =
    Key<{ concat(&[TYPE_IFNAME, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]) }, 24>;

/// nft's userdata TLVs, built by libnftnl (`nftnl_udata_*`).
struct Udata(NonNull<sys::nftnl_udata_buf>);

impl Udata {
    fn new() -> Udata {
        // SAFETY: plain allocation; the result is checked.
        Udata(alloc_or_abort(unsafe {
            sys::nftnl_udata_buf_alloc(sys::NFTNL_UDATA_COMMENT_MAXLEN + 16)
        }))
    }

    /// Adds a NUL-terminated string TLV; false when it does not fit.
    fn put_strz(&mut self, ty: u32, s: &CStr) -> bool {
        // SAFETY: the buffer is live and `s` is NUL-terminated.
        unsafe { sys::nftnl_udata_put_strz(self.0.as_ptr(), ty as u8, s.as_ptr()) }
    }

    /// Adds a u32 TLV (host byte order, as nft writes it).
    fn put_u32(&mut self, ty: u32, v: u32) -> bool {
        // SAFETY: the buffer is live.
        unsafe { sys::nftnl_udata_put_u32(self.0.as_ptr(), ty as u8, v) }
    }

    /// The TLVs: pointer and length, valid while `self` lives (libnftnl
    /// copies them into the object they are set on).
    fn data(&self) -> (*const c_void, u32) {
        // SAFETY: the buffer is live.
        unsafe {
            (
                sys::nftnl_udata_buf_data(self.0.as_ptr()),
                sys::nftnl_udata_buf_len(self.0.as_ptr()),
            )
        }
    }
}

impl Drop for Udata {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_udata_buf_alloc, freed once.
        unsafe { sys::nftnl_udata_buf_free(self.0.as_ptr()) }
    }
}

/// nft's `NFT_BYTEORDER_HOST`: the key is a string, so `nft list` prints
/// the names of an `ifname` set.
const BYTEORDER_HOST: u32 = 1;

/// Marks the keys of `set` as host byte order (set userdata).
pub(super) fn host_byte_order<K>(set: &Set<'_, K>) {
    let mut ud = Udata::new();
    if ud.put_u32(sys::NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_HOST) {
        let (data, len) = ud.data();
        // SAFETY: the set is live; libnftnl copies `len` bytes from `data`.
        unsafe {
            sys::nftnl_set_set_data(
                set.as_ptr().as_ptr(),
                sys::NFTNL_SET_USERDATA as u16,
                data,
                len,
            );
        }
    }
}

/// A table message nftnl's [`Table`] cannot write: with a comment (nft's
/// userdata), or `NFT_MSG_DESTROYTABLE`. Built by libnftnl.
pub(super) struct TableMsg {
    table: NonNull<sys::nftnl_table>,
    ty: u16,
    flags: u16,
}

impl TableMsg {
    pub(super) fn new(ty: u16, flags: u16, comment: Option<&CStr>) -> TableMsg {
        // SAFETY: plain allocation; the result is checked.
        let table = alloc_or_abort(unsafe { sys::nftnl_table_alloc() });
        // SAFETY: `table` is live; the strings are NUL-terminated and
        // copied by libnftnl, as is the userdata.
        unsafe {
            let t = table.as_ptr();
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, u32::from(FAMILY_INET));
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, TABLE_C.as_ptr());
            if let Some(c) = comment {
                let mut ud = Udata::new();
                if ud.put_strz(sys::NFTNL_UDATA_TABLE_COMMENT, c) {
                    let (data, len) = ud.data();
                    sys::nftnl_table_set_data(t, sys::NFTNL_TABLE_USERDATA as u16, data, len);
                }
            }
        }
        TableMsg { table, ty, flags }
    }
}

// SAFETY: a table message (name, family, a comment of at most
// NFTNL_UDATA_COMMENT_MAXLEN bytes) is far below nft_nlmsg_maxsize().
unsafe impl NlMsg for TableMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: the caller (nftnl's Batch) gives room for the largest
        // message; the table is live.
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                self.ty,
                u16::from(FAMILY_INET),
                nl::F_ACK | self.flags,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(h, self.table.as_ptr());
        }
    }
}

impl Drop for TableMsg {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_table_alloc, freed once.
        unsafe { sys::nftnl_table_free(self.table.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_type_ids_match_nft() {
        // nft computes concatenated types as (t1 << 6) | t2 ...
        assert_eq!(concat(&[TYPE_IFNAME, TYPE_IFNAME]), (41 << 6) | 41);
        assert_eq!(<AnyKey as SetKey>::TYPE, (41 << 6) | 41);
        assert_eq!(
            <PortKey as SetKey>::TYPE,
            (((((41 << 6) | 41) << 6) | 12) << 6) | 13
        );
    }
}
