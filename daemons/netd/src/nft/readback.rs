//! Reading the `inet hearth` table back from the kernel: its comment (the
//! ruleset's fingerprint), the rules per chain and the elements per set,
//! parsed with [`crate::netlink`].

use serde::Serialize;

use super::{msg, nfgenmsg, nft_err, nft_type, Ruleset, CHAINS, FAMILY_INET, SETS, TABLE};
use crate::error::NetError;
use crate::netlink::{self as nl, MsgBuf, Socket};

// Attributes read back from the kernel (building is libnftnl's).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;

/// What the kernel holds of our table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TableState {
    /// The table's comment (`hearth-netd <fingerprint>`).
    pub comment: Option<String>,
    /// Rules per chain, in [`CHAINS`] order.
    pub rules: [usize; 3],
    /// Elements per set, in [`SETS`] order.
    pub elements: [usize; 5],
}

fn simple(ty: u16, flags: u16, seq: u32, f: impl FnOnce(&mut MsgBuf)) -> MsgBuf {
    let mut b = MsgBuf::new();
    let m = b.begin(nft_type(ty), nl::F_REQUEST | flags, seq);
    b.raw(&nfgenmsg(FAMILY_INET, 0));
    f(&mut b);
    b.end(m);
    b
}

/// Reads our table's comment, rule counts and element counts; `None` when
/// the table does not exist.
pub fn read_state() -> Result<Option<TableState>, NetError> {
    let mut sock = Socket::open(nl::NETLINK_NETFILTER)
        .map_err(|e| nft_err(format!("open netfilter socket: {e}")))?;
    let seq = sock.next_seq();
    let req = simple(msg::GETTABLE, nl::F_ACK, seq, |m| {
        m.attr_str(NFTA_TABLE_NAME, TABLE)
    });
    let tables = match sock.dump(req.bytes(), seq, nft_type(msg::NEWTABLE)) {
        Ok(t) => t,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(nft_err(format!("read table: {e}"))),
    };
    let Some(t) = tables.first() else {
        return Ok(None);
    };
    let mut st = TableState::default();
    if let Some(ud) = t
        .get(4..)
        .and_then(|a| nl::find_attr(a, NFTA_TABLE_USERDATA))
    {
        if ud.len() >= 2 && ud[0] == 0 {
            let n = (ud[1] as usize).min(ud.len() - 2);
            st.comment = Some(nl::attr_str(&ud[2..2 + n]));
        }
    }
    let seq = sock.next_seq();
    let req = simple(msg::GETRULE, nl::F_DUMP, seq, |m| {
        m.attr_str(NFTA_RULE_TABLE, TABLE)
    });
    for r in sock
        .dump(req.bytes(), seq, nft_type(msg::NEWRULE))
        .map_err(|e| nft_err(format!("read rules: {e}")))?
    {
        let Some(attrs) = r.get(4..) else { continue };
        let table = nl::find_attr(attrs, NFTA_RULE_TABLE).map(nl::attr_str);
        let chain = nl::find_attr(attrs, NFTA_RULE_CHAIN).map(nl::attr_str);
        if table.as_deref() != Some(TABLE) {
            continue;
        }
        if let Some(i) = chain.and_then(|c| CHAINS.iter().position(|x| *x == c)) {
            st.rules[i] += 1;
        } else {
            // A chain we do not create: someone altered the table.
            st.rules = [usize::MAX; 3];
        }
    }
    for (i, set) in SETS.iter().enumerate() {
        let seq = sock.next_seq();
        let req = simple(msg::GETSETELEM, nl::F_DUMP, seq, |m| {
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            m.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        });
        let msgs = match sock.dump(req.bytes(), seq, nft_type(msg::NEWSETELEM)) {
            Ok(m) => m,
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                st.elements[i] = usize::MAX;
                continue;
            }
            Err(e) => return Err(nft_err(format!("read set {set}: {e}"))),
        };
        for p in msgs {
            let Some(attrs) = p.get(4..) else { continue };
            if let Some(list) = nl::find_attr(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) {
                st.elements[i] += nl::Attrs::new(list).count();
            }
        }
    }
    Ok(Some(st))
}

/// True when the kernel's table carries `rs` (same fingerprint, rule counts
/// and element counts).
pub fn is_current(rs: &Ruleset) -> Result<bool, NetError> {
    let Some(st) = read_state()? else {
        return Ok(false);
    };
    Ok(
        st.comment.as_deref() == Some(format!("hearth-netd {}", rs.fingerprint()).as_str())
            && st.rules == rs.rule_counts()
            && st.elements == rs.element_counts(),
    )
}
