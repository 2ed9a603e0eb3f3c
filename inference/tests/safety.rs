//! The trained interpreter with the real models on requests where the
//! design, not the score, must hold: a negated request never yields its
//! plan, a question never yields a change, values come from their spans
//! (durations parsed), a change naming the protected domain or a name with
//! a space is refused, and a value the plan would not use is offered in a
//! clarifying question or refused, never dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use hearth_common::spec::Context;
use hearth_common::types::DomainId;
use hearth_inference::{DevicePreference, Engine, Interpretation};
use serde_json::{json, Value};

fn engine() -> Engine {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let specs = hearth_inference::specs::load_dir(&root.join("catalog")).unwrap();
    let mut e = Engine::load(&root.join("models"), DevicePreference::Cpu).unwrap();
    e.set_catalog(&specs).unwrap();
    e
}

fn ctx() -> Context {
    let d = |s: &str| DomainId::parse(s).unwrap();
    Context {
        domains: ["admin", "house", "cameras", "visitors", "lab", "studio"]
            .iter()
            .map(|s| d(s))
            .collect(),
        protected: vec![d("admin")],
    }
}

fn plan(got: &Interpretation) -> Option<(String, Value)> {
    match got {
        Interpretation::Plan {
            playbook, params, ..
        } => Some((playbook.clone(), json!(params))),
        _ => None,
    }
}

/// Checks that none of `texts` is planned (refused or asked back).
fn never_planned(e: &Engine, c: &Context, texts: &[&str]) {
    for text in texts {
        let got = e.interpret(text, c);
        assert!(plan(&got).is_none(), "{text:?} gave a plan: {got:?}");
    }
}

/// Whether the outcome is a clarifying question offering this plan.
fn asks_for(got: &Interpretation, playbook: &str, params: &Value) -> bool {
    matches!(got, Interpretation::Clarify { options, .. }
        if options.iter().any(|o| o.playbook == playbook && json!(o.params) == *params))
}

#[test]
fn negated_and_hypothetical_requests_never_yield_their_plan() {
    let e = engine();
    let c = ctx();
    never_planned(
        &e,
        &c,
        &[
            "please don't delete the lab domain",
            "do not remove studio",
            "never revoke the certificate of cam.house.example",
            "I don't want you to remove the dns record for tv.house.example",
            "should I delete the lab domain?",
            "what would happen if I removed the studio network?",
            "how do I revoke the certificate of nas.house.example?",
        ],
    );
}

#[test]
fn questions_about_a_change_become_a_clarifying_question_offering_it() {
    let e = engine();
    let got = e.interpret("should I let cameras reach house?", &ctx());
    let Interpretation::Clarify { options, .. } = &got else {
        panic!("expected a clarifying question: {got:?}");
    };
    // The plan asked about is offered (with the other direction too when
    // the model is not sure which way round it was meant).
    assert!(
        options.iter().any(|o| o.playbook == "net.allow"
            && json!(o.params) == json!({"from": "cameras", "to": "house"})),
        "{got:?}"
    );
}

#[test]
fn values_come_from_their_spans() {
    let e = engine();
    let c = ctx();
    let got = e.interpret(
        "issue a certificate for nas.house.example valid for two weeks",
        &c,
    );
    assert_eq!(
        plan(&got),
        Some((
            "pki.issue_certificate".into(),
            json!({"name": "nas.house.example", "days": 14})
        )),
        "{got:?}"
    );
    let got = e.interpret("point printer.house.example at 192.168.40.7", &c);
    assert_eq!(
        plan(&got),
        Some((
            "dns.add_record".into(),
            json!({"name": "printer.house.example", "address": "192.168.40.7"})
        )),
        "{got:?}"
    );
    // A name written with a possessive is the name, not the bare word
    // after it that also parses as one ("IPv6").
    let got = e.interpret(
        "Change printer.house.example's IPv6 address to fd00::31.",
        &c,
    );
    assert_eq!(
        plan(&got),
        Some((
            "dns.update_record".into(),
            json!({"name": "printer.house.example", "address": "fd00::31"})
        )),
        "{got:?}"
    );
    // The arrow between two domains is punctuation, not a value the plan
    // would leave out.
    // The plan, or (recipe 13's heads are not sure which way round the
    // terse notation reads) a question offering it; never a refusal.
    let got = e.interpret("lab -> studio udp 5004", &c);
    let want = json!({"from": "lab", "to": "studio", "port": 5004, "protocol": "udp"});
    let offered = match &got {
        Interpretation::Plan {
            playbook, params, ..
        } => playbook == "net.allow" && json!(params) == want,
        Interpretation::Clarify { options, .. } => options
            .iter()
            .any(|o| o.playbook == "net.allow" && json!(o.params) == want),
        _ => false,
    };
    assert!(offered, "{got:?}");
}

#[test]
fn what_the_context_or_the_values_forbid_is_refused() {
    let e = engine();
    let c = ctx();
    for (text, why) in [
        ("delete the admin domain", "admin"),
        ("add nas.house.example at 10.0.0.2 and 10.0.0.3", ""),
        ("create a network named \"guest wifi\"", ""),
    ] {
        let got = e.interpret(text, &c);
        assert!(plan(&got).is_none(), "{text:?} gave a plan: {got:?}");
        if let Interpretation::Refusal { reason, .. } = &got {
            assert!(reason.contains(why), "{text:?}: {reason}");
        }
    }
}

/// A destructive playbook is planned only above the engine's bar for
/// destructive playbooks: the same request, planned at the default bar, is
/// not planned when the bar is above any probability, and a change that is
/// not destructive is unaffected.
#[test]
fn destructive_playbooks_need_the_higher_bar() {
    let mut e = engine();
    let c = ctx();
    let delete = "delete the lab domain";
    let create = "create a network called garden";
    assert_eq!(
        plan(&e.interpret(delete, &c)).map(|p| p.0),
        Some("net.delete_domain".into())
    );
    assert_eq!(
        plan(&e.interpret(create, &c)).map(|p| p.0),
        Some("net.create_domain".into())
    );
    e.options.min_destructive = 1.01;
    let got = e.interpret(delete, &c);
    assert!(plan(&got).is_none(), "{got:?}");
    assert_eq!(
        plan(&e.interpret(create, &c)).map(|p| p.0),
        Some("net.create_domain".into())
    );
}

/// A clause that sets another action aside ("don't X, just Y") neither
/// cancels the request nor is carried out: Y is planned, never X (recipes
/// 15 and 18 plan the first; recipe 17's heads asked back over it,
/// offering the view first).
#[test]
fn a_clause_setting_another_action_aside_is_not_planned() {
    let e = engine();
    let c = ctx();
    let text = "don't delete studio, just show me the network";
    let got = e.interpret(text, &c);
    match &got {
        Interpretation::Clarify { options, .. } => {
            assert_eq!(options[0].playbook, "net.show", "{text:?}: {got:?}")
        }
        _ => assert_eq!(
            plan(&got),
            Some(("net.show".to_string(), json!({}))),
            "{text:?}: {got:?}"
        ),
    }
    let mut planned = 0;
    for (text, want, params) in [
        (
            "no need to reboot anything; list the dns records",
            "dns.list_records",
            json!({}),
        ),
        (
            "show the attestation status and please don't change anything",
            "attest.status",
            json!({}),
        ),
        (
            "don't touch the firewall; add tv.house.example at 192.168.7.9",
            "dns.add_record",
            json!({"name": "tv.house.example", "address": "192.168.7.9"}),
        ),
    ] {
        let got = e.interpret(text, &c);
        let p = plan(&got);
        // Never another plan; recipe 18's heads refuse the second as not
        // clear enough (attest.status at 56 %, the rest *none of them*),
        // the only one of the three not planned.
        assert!(
            p.is_none() || p == Some((want.to_string(), params.clone())),
            "{text:?}: {got:?}"
        );
        planned += usize::from(p.is_some());
    }
    assert!(
        planned >= 2,
        "{planned} of 3 requests beside an aside planned"
    );
}

/// A new domain's name the tagger is unsure of is still read from the
/// request when it is the likeliest word for the name: a name too long is
/// refused naming it (not as a missing name). Without the pointer, the
/// first request is refused as naming no domain.
#[test]
fn a_required_name_is_the_likeliest_word_for_it() {
    let mut e = engine();
    let c = ctx();
    for (text, name) in [
        (
            "create a domain called superlongdomainname",
            "superlongdomainname",
        ),
        (
            "add a vlan named extraordinarilylongname",
            "extraordinarilylongname",
        ),
    ] {
        let got = e.interpret(text, &c);
        let Interpretation::Refusal { reason, .. } = &got else {
            panic!("{text:?}: expected a refusal: {got:?}");
        };
        assert!(reason.contains(name), "{text:?}: {reason}");
    }
    e.options.min_pointer = 1.01;
    let text = "create a domain called superlongdomainname";
    let got = e.interpret(text, &c);
    assert!(
        !format!("{got:?}").contains("superlongdomainname"),
        "{text:?} without the pointer: {got:?}"
    );
}

/// The purpose of a new domain is not its name: a word the tagger reads
/// as context more than as the domain is never pointed at, so "a domain
/// for the lodgers" names nothing and is refused as missing its name
/// ("Add a domain for the lodgers." was planned as a domain named
/// *lodgers* by both recipe-14 seeds at hand before the guard).
#[test]
fn the_purpose_of_a_new_domain_is_not_its_name() {
    let e = engine();
    let c = ctx();
    for text in [
        "Create a network for the kids.",
        "Make a new domain for our guests.",
        "set up a segment for the printers",
        "I need a network for my smart plugs",
        "Add a domain for the lodgers.",
    ] {
        let got = e.interpret(text, &c);
        let Interpretation::Refusal { reason, .. } = &got else {
            panic!("{text:?}: expected a refusal: {got:?}");
        };
        // Missing its name, or (recipe 17's heads, "…for our guests.") not
        // sure enough of the playbook: never a name read from the purpose.
        assert!(
            reason.contains("missing domain") || reason.contains("not clear enough"),
            "{text:?}: {reason}"
        );
    }
    // Named, the same request is planned: the guard takes only the purpose.
    let text = "Add a domain for the lodgers called lodge.";
    let got = e.interpret(text, &c);
    assert_eq!(
        plan(&got),
        Some(("net.create_domain".to_string(), json!({"domain": "lodge"}))),
        "{text:?}: {got:?}"
    );
}

/// A part that says not to do the very plan the request asks for refuses
/// it, even where the whole, read at once, drowns the negation: with the
/// parts check off, the first request is planned as the deletion by the
/// shipped heads (decision 070, "a plan must hold for the request's
/// parts").
#[test]
fn a_part_saying_not_to_do_the_plan_refuses_it() {
    let mut e = engine();
    let c = ctx();
    let texts = [
        "please don't remove the studio domain, we still use it every day",
        "Do not delete lab. It holds the test machines.",
        "don't revoke the certificate of cam.house.example, it is still in use",
    ];
    for text in texts {
        let got = e.interpret(text, &c);
        assert!(plan(&got).is_none(), "{text:?} gave a plan: {got:?}");
    }
    // With the parts check off, the whole reading drowns the part for at
    // least one of these and plans what it forbids (recipe 19's heads: the
    // last two; recipe 18's: the fifth, as net.revoke; recipe 14's: the
    // second, read whole as the deletion; recipe 13's: the fourth, as
    // net.revoke; recipe 11's: the first, as the deletion). With it on,
    // none is planned that way.
    let drowned = [
        (texts[0], "net.delete_domain"),
        (
            "Deleting the cameras network is not what I want. Keep it.",
            "net.delete_domain",
        ),
        (
            "Removing access isn't what I'm after, I want lab to be able to reach studio.",
            "net.revoke",
        ),
        // Planned as the revocation by every training until the committee
        // let a majority plan over a member refusing only over values
        // (`values_majority`); since the members read values from their
        // mean tags (`mean_tags`) its second part alone asks which way
        // round, and the first, a negation of the revocation naming no
        // value, refuses the whole (`a_value_less_negation_...` below).
        (
            "Revoking access is the wrong idea, lab should reach studio.",
            "net.revoke",
        ),
        (
            "Isolating cameras from house is not the plan, cameras must reach house.",
            "net.revoke",
        ),
        // Read whole by recipe 19's heads as what they forbid.
        (
            "Removing access isn't what I'm after, lab should get to studio.",
            "net.revoke",
        ),
        (
            "had been about to wipe the studio domain; not doing that anymore",
            "net.delete_domain",
        ),
    ];
    for (text, forbidden) in drowned {
        let got = e.interpret(text, &c);
        assert!(
            plan(&got).is_none_or(|(id, _)| id != forbidden),
            "{text:?}: {got:?}"
        );
    }
    e.options.check_parts = false;
    let whole: Vec<String> = drowned
        .iter()
        .filter_map(|(text, forbidden)| {
            let got = e.interpret(text, &c);
            plan(&got)
                .filter(|(id, _)| id == forbidden)
                .map(|_| text.to_string())
        })
        .collect();
    assert!(
        !whole.is_empty(),
        "with the parts check off, no request was planned as its negated part"
    );
}

/// A part that says not to do the whole's playbook and names no value
/// refuses the whole unless another part alone asks for that very plan: a
/// request that waves a kind of change away and then asks for the other
/// one is never planned as the change it waved away. Read whole, at least
/// one of these requests is the revocation (recipe 18's heads: the second;
/// they read the first whole as a *do not* revoke and refuse it); read in
/// parts, they are refused (recipe 15's and 18's heads: the first part a
/// value-less *do not* revoke) or asked back (recipe 17's: the first part
/// is none of them, the second asks for the allow, so the two changes are
/// offered).
#[test]
fn a_value_less_negation_refuses_unless_a_part_asks_for_the_plan() {
    let mut e = engine();
    let c = ctx();
    let waved = [
        (
            "Revoking access is the wrong idea, lab should reach studio.",
            "lab",
            "studio",
        ),
        (
            "Taking access away is not what I want; visitors should get to house.",
            "visitors",
            "house",
        ),
    ];
    let mut read_whole_as_revoke = 0;
    for (text, from, to) in waved {
        let revoke = Some(("net.revoke".to_string(), json!({"from": from, "to": to})));
        let got = e.interpret(text, &c);
        match &got {
            Interpretation::Refusal { reason, .. } => {
                assert!(reason.contains("not to do this"), "{text:?}: {reason}")
            }
            Interpretation::Clarify { .. } => {
                assert!(
                    asks_for(&got, "net.allow", &json!({"from": from, "to": to})),
                    "{text:?}: {got:?}"
                )
            }
            _ => panic!("{text:?}: expected a refusal or a question: {got:?}"),
        }
        e.options.check_parts = false;
        let whole = e.interpret(text, &c);
        e.options.check_parts = true;
        if plan(&whole) == revoke {
            read_whole_as_revoke += 1;
        }
    }
    assert!(
        read_whole_as_revoke > 0,
        "read whole, none of these requests was the revocation: the parts check is not what refuses them"
    );
    // A part that asks for the plan itself keeps it.
    let text = "I don't need a custom subnet, just make a new domain called testbed.";
    let got = e.interpret(text, &c);
    assert_eq!(
        plan(&got),
        Some((
            "net.create_domain".to_string(),
            json!({"domain": "testbed"})
        )),
        "{text:?}: {got:?}"
    );
}

/// Two requests in one, the second naming its value by a pronoun ("… and
/// give it a certificate"), are not planned as the first alone.
#[test]
fn a_second_request_referring_back_is_not_dropped() {
    let e = engine();
    let c = ctx();
    never_planned(
        &e,
        &c,
        &[
            "add tv.house.example at 192.168.7.9 and give it a certificate",
            "create the record cam2.house.example for 10.0.0.7 and then issue it a cert",
            "make a domain called garage and let it reach house",
        ],
    );
}

/// A DNS name the alias plan would not use is offered in place of the
/// parameter the tagger reads it as (here the target), never in place of
/// the alias's own name: every plan offered keeps the name.
#[test]
fn an_unused_name_is_offered_for_the_role_it_reads_as() {
    let e = engine();
    let c = ctx();
    let text = "create an alias dashboard.lan for grafana.lan instead of metrics.lan";
    let got = e.interpret(text, &c);
    let names: Vec<Value> = match &got {
        Interpretation::Plan { params, .. } => vec![json!(params)["name"].clone()],
        Interpretation::Clarify { options, .. } => options
            .iter()
            .map(|o| json!(o.params)["name"].clone())
            .collect(),
        Interpretation::Refusal { .. } => Vec::new(),
    };
    assert!(
        names.iter().all(|n| n == "dashboard.lan"),
        "{text:?}: {got:?}"
    );
}

/// A record moving to a new address is never planned with the address it
/// had: the request names both, and where the tagger reads only one as
/// the value, the other (the same type, unused) makes a clarifying
/// question offering both plans, never a plan with either.
#[test]
fn an_unused_value_of_a_held_type_is_offered_not_dropped() {
    let e = engine();
    let c = ctx();
    let mut asked = 0;
    for (text, name, old, new) in [
        (
            "move nas.lan from 192.168.1.5 over to 192.168.1.50",
            "nas.lan",
            "192.168.1.5",
            "192.168.1.50",
        ),
        (
            "change printer.home.arpa from 10.20.30.12 to 10.20.30.14",
            "printer.home.arpa",
            "10.20.30.12",
            "10.20.30.14",
        ),
        (
            "change printer.home.arpa from 172.19.72.73 to 192.168.97.164",
            "printer.home.arpa",
            "172.19.72.73",
            "192.168.97.164",
        ),
    ] {
        let got = e.interpret(text, &c);
        if let Some((_, params)) = plan(&got) {
            assert_eq!(params["address"], new, "{text:?} planned {params}");
            continue;
        }
        if let Interpretation::Clarify {
            question, options, ..
        } = &got
        {
            let offered: Vec<(&str, &str)> = options
                .iter()
                .filter(|o| o.playbook == "dns.update_record")
                .map(|o| {
                    (
                        o.params["name"].as_str().unwrap_or(""),
                        o.params["address"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            if question.contains(old) || question.contains(new) {
                assert!(offered.contains(&(name, new)), "{text:?}: {got:?}");
                assert!(offered.contains(&(name, old)), "{text:?}: {got:?}");
                asked += 1;
            }
        }
    }
    // The shipped heads read each of these with one address only.
    assert!(asked >= 2, "offered on {asked} of 3");
}

/// Passive wording ("X should accept connections from Y"): the request is
/// read again with the two domains' placeholders traded, and the two
/// readings together must keep each position's role. Both requests are
/// planned the right way round (with the re-read alone held to the first
/// reading's bar, both were asked about: "which way round?"), and the
/// reverse is never planned.
#[test]
fn passive_wording_keeps_its_roles_when_read_again_traded() {
    let e = engine();
    let c = ctx();
    for (text, from, to, port) in [
        (
            "cameras should accept connections from house on port 8443",
            "house",
            "cameras",
            8443,
        ),
        (
            "the lab needs to be reachable by studio on port 22",
            "studio",
            "lab",
            22,
        ),
    ] {
        let (got, stats) = e.interpret_with_stats(text, &c);
        assert_eq!(
            plan(&got),
            Some((
                "net.allow".to_string(),
                json!({"from": from, "to": to, "port": port, "protocol": "tcp"})
            )),
            "{text:?}: {got:?}"
        );
        // Every member read it again traded (each planned it), over one
        // encoder pass shared by all of them.
        assert_eq!(stats.rereads, 1, "{text:?}");
    }
}

/// A problem told with no request ("the certificate of X is compromised")
/// is never planned: the playbook that would mend it is offered in a
/// clarifying question (catalog `reports`, recipe 14). Recipe 13's heads
/// planned the first request's revocation outright.
#[test]
fn a_report_of_a_problem_alone_is_offered_never_planned() {
    let e = engine();
    let c = ctx();
    let mut offered = 0;
    for (text, mends) in [
        (
            "the certificate for vpn.house.example is compromised",
            "pki.revoke_certificate",
        ),
        (
            "I'm afraid the key of mail.house.example got out",
            "pki.revoke_certificate",
        ),
        ("lab can't get to studio", "net.allow"),
        ("house devices can't reach cameras at all", "net.allow"),
    ] {
        let got = e.interpret(text, &c);
        assert!(plan(&got).is_none(), "{text:?} gave a plan: {got:?}");
        if let Interpretation::Clarify { options, .. } = &got {
            if options.iter().any(|o| o.playbook == mends) {
                offered += 1;
            }
        }
    }
    // Not merely refused: most are offered.
    assert!(
        offered >= 3,
        "{offered} of 4 offered the plan that mends it"
    );
}

/// Values come from the members' mean tag probabilities (`mean_tags`, on):
/// where the members each lean a different way on a role, the mean settles
/// it; read member by member, they disagree and the request is asked back.
/// The requests are cases of the evaluation sets that the mean turned from
/// a question into the expected plan (docs/perf.md, 2026-12-06 night, late).
#[test]
fn the_members_mean_tags_settle_roles_they_split_on() {
    let d = |list: &[&str]| Context {
        domains: list.iter().map(|s| DomainId::parse(s).unwrap()).collect(),
        protected: vec![DomainId::parse("admin").unwrap()],
    };
    let plain = d(&["admin", "lan", "iot", "guest", "work"]);
    let cases = [
        (
            "allow access to lan from guest on port 25",
            plain.clone(),
            "net.allow",
            json!({"from": "guest", "to": "lan", "port": 25, "protocol": "tcp"}),
        ),
        (
            "iot->lan tcp/8883",
            plain.clone(),
            "net.allow",
            json!({"from": "iot", "to": "lan", "port": 8883, "protocol": "tcp"}),
        ),
        (
            "give nas.lan the nickname files.lan",
            plain.clone(),
            "dns.add_alias",
            json!({"name": "files.lan", "target": "nas.lan"}),
        ),
        (
            "Make tv reachable for livingroom.",
            d(&["admin", "livingroom", "homeoffice", "garage", "tv"]),
            "net.allow",
            json!({"from": "livingroom", "to": "tv"}),
        ),
        (
            "let servers be reached from lan on 22",
            d(&["admin", "lan", "servers", "guest", "lab"]),
            "net.allow",
            json!({"from": "lan", "to": "servers", "port": 22, "protocol": "tcp"}),
        ),
    ];
    let mut e = engine();
    assert!(e.options.mean_tags, "the mean tags are the default");
    // Planned right or asked back, never the other way round; member by
    // member fewer are planned: what planned them is the mean. (Recipe
    // 15's heads planned all five with the mean; recipe 17's plan one and ask
    // back on the others, "allow access to lan from guest on port 25"
    // which way round: a loss of recipe 17, docs/perf.md.)
    let mut planned = [0, 0];
    for (i, mean) in [true, false].into_iter().enumerate() {
        e.options.mean_tags = mean;
        for (text, c, playbook, params) in &cases {
            let got = e.interpret(text, c);
            if let Some(p) = plan(&got) {
                assert_eq!(p, (playbook.to_string(), params.clone()), "{text:?}");
                planned[i] += 1;
            }
        }
    }
    assert!(
        planned[0] > planned[1],
        "planned {} of {} with the mean tags, {} without",
        planned[0],
        cases.len(),
        planned[1]
    );
}

/// A domain never reaches itself (the catalog's `differs_from`): no plan
/// and no offered option is from a domain to itself. Read with `from`
/// twice, the value that would make the plan impossible gives way to the
/// other one.
#[test]
fn a_domain_is_never_offered_to_itself() {
    let e = engine();
    let c = ctx();
    // A pair of two domains is still planned (recipe 19's heads refuse the
    // first request below, which names lab twice, as leaving a mention
    // unused; recipe 18's planned it).
    let got = e.interpret("remove visitors' access to lab", &c);
    assert_eq!(
        plan(&got),
        Some((
            "net.revoke".to_string(),
            json!({"from": "visitors", "to": "lab"})
        )),
        "{got:?}"
    );
    for text in [
        "I don't want the visitors on the lab anymore, remove visitors' access to lab",
        "the lab is bothering the studio, cut lab off from studio",
        "the cameras should stay off the house network, so revoke cameras' access to house",
        "let lab reach lab",
        "allow studio to studio",
        "revoke house from house",
    ] {
        let got = e.interpret(text, &c);
        let itself = |p: &Value| p.get("from").is_some() && p.get("from") == p.get("to");
        match &got {
            Interpretation::Plan { params, .. } => {
                assert!(!itself(&json!(params)), "{text:?}: {got:?}")
            }
            Interpretation::Clarify { options, .. } => {
                for o in options {
                    assert!(!itself(&json!(o.params)), "{text:?}: {got:?}");
                }
            }
            Interpretation::Refusal { .. } => {}
        }
    }
}

/// A part that, read alone, leans to another change than the whole's plan
/// (a question whose likeliest option is that change) asks for it: the
/// whole becomes a question offering both, never the plan no part made.
/// "Removing access isn't what I'm after, lab should get to studio." was
/// planned as the revocation by the shipped heads (read whole; the first
/// part alone reads as a revocation, its negation missed; the second alone
/// asks, allow first) before the rule took any leaning part into account,
/// not only one offering other changes alone.
#[test]
fn a_part_leaning_to_another_change_makes_the_whole_a_question() {
    let mut e = engine();
    let c = ctx();
    let allow = json!({"from": "lab", "to": "studio"});
    let part = e.interpret("lab should get to studio.", &c);
    let Interpretation::Clarify { options, .. } = &part else {
        panic!("the part alone: expected a question: {part:?}");
    };
    assert_eq!(options[0].playbook, "net.allow", "{part:?}");
    let text = "Removing access isn't what I'm after, lab should get to studio.";
    let got = e.interpret(text, &c);
    // Asked back offering the allow, or (recipe 19's heads: the first part
    // a value-less "do not revoke", the second leaning to the allow)
    // refused; never planned.
    assert!(
        asks_for(&got, "net.allow", &allow) || matches!(got, Interpretation::Refusal { .. }),
        "{text:?}: {got:?}"
    );
    // Read whole, without the parts check, it is the revocation.
    e.options.check_parts = false;
    let whole = e.interpret(text, &c);
    assert_eq!(
        plan(&whole),
        Some(("net.revoke".to_string(), allow.clone())),
        "{whole:?}"
    );
}

/// A change asked for in a request written as a question is offered,
/// never planned, however plainly the heads read it: "could you let
/// visitors reach studio?" is planned with the rule off (the heads read
/// a polite request) and asked back with it on, offering that plan.
#[test]
fn a_request_written_as_a_question_is_asked_back() {
    let mut e = engine();
    let c = ctx();
    let allow = json!({"from": "visitors", "to": "studio"});
    for text in [
        "could you let visitors reach studio?",
        "maybe allow visitors to studio?",
    ] {
        let got = e.interpret(text, &c);
        assert!(asks_for(&got, "net.allow", &allow), "{text:?}: {got:?}");
    }
    // A read is not a change: answered as asked.
    let got = e.interpret("which certificates exist?", &c);
    assert_eq!(
        plan(&got),
        Some(("pki.list_certificates".to_string(), json!({}))),
        "{got:?}"
    );
    e.options.question_marks_ask = false;
    let got = e.interpret("could you let visitors reach studio?", &c);
    assert_eq!(
        plan(&got),
        Some(("net.allow".to_string(), allow)),
        "{got:?}"
    );
}

/// A plan two members make stands when the third, not sure enough of the
/// playbook, could offer nothing but that plan: with recipe 17's heads
/// "Create a domain called studio, and don't give it access to anything
/// yet." (a case of `inference/eval/asides.jsonl`) is the new domain with
/// the rule on and a question with it off (recipe 15's showed it on "tv.lan
/// is now on 192.168.1.50 (was .49)", which recipe 17's members all plan).
/// A member whose doubt is a second request the text also makes ("… and
/// give it a certificate": the certificate's name is tagged) is still
/// heard.
#[test]
fn a_member_that_could_offer_only_the_plan_stands_aside() {
    let mut e = engine();
    let c = ctx();
    let moved = json!({"name": "tv.lan", "address": "192.168.1.50"});
    let text = "tv.lan is now on 192.168.1.50 (was .49)";
    let got = e.interpret(text, &c);
    assert_eq!(
        plan(&got),
        Some(("dns.update_record".to_string(), moved.clone())),
        "{got:?}"
    );
    never_planned(
        &e,
        &c,
        &[
            "Add tv.house.example at 192.168.7.9 and give it a certificate.",
            "add tv.house.example at 192.168.7.9 and give it a certificate",
        ],
    );
    // One member, not sure enough of the record, asks whether this is what
    // was meant and offers nothing else: the plan stands (recipe 19's
    // heads; recipe 18's did so for "Create a domain called studio, and
    // don't give it access to anything yet.", which recipe 19's refuse).
    let text = "create pc.family.lan with 192.168.3.19";
    let added = json!({"name": "pc.family.lan", "address": "192.168.3.19"});
    let got = e.interpret(text, &c);
    assert_eq!(
        plan(&got),
        Some(("dns.add_record".to_string(), added.clone())),
        "{got:?}"
    );
    e.options.lone_majority = false;
    let got = e.interpret(text, &c);
    assert!(asks_for(&got, "dns.add_record", &added), "{got:?}");
}

/// A request to undo a change that was made is never planned as that
/// change: it is refused (learned as *none of them*), or at most planned
/// as the change that undoes it (the playbook's `opposite`, the same
/// values). A change kept ("don't undo …") is never planned either way,
/// nor one no playbook undoes (a revoked certificate).
#[test]
fn a_request_to_undo_a_change_never_yields_that_change() {
    let e = engine();
    let c = ctx();
    let ft = |f: &str, t: &str| json!({"from": f, "to": t});
    let cases = [
        (
            "you cut lab off from studio by accident; please undo that",
            ("net.revoke", ft("lab", "studio")),
            Some(("net.allow", ft("lab", "studio"))),
        ),
        (
            "please reverse the revocation of house's access to cameras",
            ("net.revoke", ft("house", "cameras")),
            Some(("net.allow", ft("house", "cameras"))),
        ),
        (
            "roll back the allow from visitors to house",
            ("net.allow", ft("visitors", "house")),
            Some(("net.revoke", ft("visitors", "house"))),
        ),
        (
            "I had you block studio from lab this morning; put it back",
            ("net.revoke", ft("studio", "lab")),
            Some(("net.allow", ft("studio", "lab"))),
        ),
        (
            "undo the deletion of the garage domain",
            ("net.delete_domain", json!({"domain": "garage"})),
            Some(("net.create_domain", json!({"domain": "garage"}))),
        ),
        (
            "don't undo the block from visitors to lab",
            ("net.revoke", ft("visitors", "lab")),
            None,
        ),
        (
            "the certificate of vpn.house.example was revoked by accident, undo it",
            (
                "pki.revoke_certificate",
                json!({"name": "vpn.house.example"}),
            ),
            None,
        ),
    ];
    never_the_named_change(&e, &c, &cases);
}

/// A request to stop a change that goes on ("stop blocking …") is never
/// planned as that change: it is planned as the opposite with the same
/// values (recipe 18 learns the catalog's `ongoing` phrases inside the
/// language file's requests to stop), or refused or asked about. Before
/// recipe 18 the first action-like word decided, and "quit blocking A from
/// B" became the revoke of A to B. A request to go on with it ("keep
/// blocking …") is never a plan.
#[test]
fn a_request_to_stop_a_change_never_yields_that_change() {
    let e = engine();
    let c = ctx();
    let ft = |f: &str, t: &str| json!({"from": f, "to": t});
    let cases = [
        (
            "could you stop blocking house from reaching lab",
            ("net.revoke", ft("house", "lab")),
            Some(("net.allow", ft("house", "lab"))),
        ),
        (
            "quit cutting visitors off from studio please",
            ("net.revoke", ft("visitors", "studio")),
            Some(("net.allow", ft("visitors", "studio"))),
        ),
        (
            "stop letting cameras talk to house",
            ("net.allow", ft("cameras", "house")),
            Some(("net.revoke", ft("cameras", "house"))),
        ),
        (
            "no more allowing traffic from lab to studio",
            ("net.allow", ft("lab", "studio")),
            Some(("net.revoke", ft("lab", "studio"))),
        ),
        (
            "keep blocking visitors from house",
            ("net.revoke", ft("visitors", "house")),
            None,
        ),
        (
            "carry on letting lab into studio",
            ("net.allow", ft("lab", "studio")),
            None,
        ),
    ];
    let opposite = never_the_named_change(&e, &c, &cases);
    // Refusing every one would pass the checks above: most are planned.
    assert!(opposite >= 3, "{opposite} of 4 requests to stop planned");
}

/// A validity with no number of days in it is never the default 90 days
/// (recipe 19: the language file's `open_durations`, none of the words
/// below among them, fill a duration's slot now and then in training, so
/// such a span is tagged and refused as not a number of days). The
/// requests that say it with a verb ("a cert that never expires") are
/// still planned with the default by the shipped heads (docs/perf.md,
/// 2026-12-08) and are not checked here; a number still counts.
#[test]
fn a_validity_with_no_number_of_days_is_never_the_default() {
    let e = engine();
    let c = ctx();
    never_planned(
        &e,
        &c,
        &[
            "cert for vault.house.example with unlimited validity",
            "certificate for ci.house.example valid for eternity",
            "make a cert for nas.house.example without expiration",
            "issue a certificate for git.house.example valid until I retire",
        ],
    );
    let got = e.interpret(
        "issue a cert for ntp.house.example that expires in two weeks",
        &c,
    );
    assert_eq!(
        plan(&got),
        Some((
            "pki.issue_certificate".into(),
            json!({"name": "ntp.house.example", "days": 14})
        )),
        "{got:?}"
    );
}

/// A request and the change it names, with the one change it may be
/// planned as (or none): checks that none is planned as the change it
/// names, and each plan is the one allowed. Returns how many were planned.
type Named<'a> = (&'a str, (&'a str, Value), Option<(&'a str, Value)>);

fn never_the_named_change(e: &Engine, c: &Context, cases: &[Named]) -> usize {
    let mut planned = 0;
    for (text, (named, params), allowed) in cases {
        let got = e.interpret(text, c);
        let p = plan(&got);
        assert_ne!(
            p,
            Some((named.to_string(), params.clone())),
            "{text:?}: {got:?}"
        );
        match (p, allowed) {
            (None, _) => {}
            (Some(p), Some((by, params))) => {
                assert_eq!(p, (by.to_string(), params.clone()), "{text:?}: {got:?}");
                planned += 1;
            }
            (Some(_), None) => panic!("{text:?} gave a plan: {got:?}"),
        }
    }
    planned
}
