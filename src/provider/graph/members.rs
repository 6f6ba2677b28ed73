//! Membership changes (issue 12 item 4), the `graph-membership` request family: up to 20
//! ops in one [`GraphProvider::execute_batch`], their requests sent through `$batch`
//! (json-batching: at most 20 requests per batch).
//!
//! - add: `PATCH /groups/{id}` with `members@odata.bind`, at most 20 references per
//!   request, all-or-nothing (group-post-members: "you can add up to only 20 members");
//!   a chunk refused because a member is already there, or because a just-created object
//!   is not replicated yet, is redone member by member with
//!   `POST /groups/{id}/members/$ref {"@odata.id"}` (already there = done);
//! - remove: `DELETE /groups/{gid}/members/{oid}/$ref` (group-delete-members; without
//!   `/$ref` the request would delete the object itself), a 404 = already removed.
//!
//! A partly done op answers [`ProviderError::Partial`] with each failed member.

use serde_json::json;

use super::wire::{self, BatchItem, V1};
use super::{id_of, GraphProvider};
use crate::domain::op::{ObjRef, Op};
use crate::provider::{Executed, ItemFailure, Outcome, ProviderError};

/// One request of a membership op: a chunk of additions, or one removal.
struct Work {
    op: usize,
    gid: String,
    kind: Kind,
}

enum Kind {
    Add(Vec<(String, String)>),
    Remove(String, String),
}

#[derive(Default)]
struct Tally {
    done: usize,
    total: usize,
    failed: Vec<ItemFailure>,
    invalid: Option<ProviderError>,
}

pub(super) async fn membership(
    p: &GraphProvider,
    ops: &[Op],
) -> Vec<Result<Executed, ProviderError>> {
    let mut tallies: Vec<Tally> = ops.iter().map(|_| Tally::default()).collect();
    let mut work = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = plan_work(op, i, &mut work, &mut tallies[i]) {
            tallies[i].invalid = Some(e);
        }
    }
    let items: Vec<BatchItem> = work
        .iter()
        .map(|w| match &w.kind {
            Kind::Add(refs) => BatchItem {
                method: "PATCH",
                url: format!("/groups/{}", w.gid),
                body: Some(json!({
                    "members@odata.bind": refs.iter().map(|(_, id)| p.object_ref(id)).collect::<Vec<_>>()
                })),
            },
            Kind::Remove(_, uid) => BatchItem {
                method: "DELETE",
                url: format!("/groups/{}/members/{uid}/$ref", w.gid),
                body: None,
            },
        })
        .collect();
    let answers = wire::batch(&*p.http, &items).await;
    for (w, answer) in work.iter().zip(answers) {
        let t = &mut tallies[w.op];
        match &w.kind {
            Kind::Add(refs) => match answer {
                Ok(resp) if resp.ok() => t.done += refs.len(),
                Ok(resp) if !wire::is_already_there(&resp) && !wire::is_not_found(&resp) => {
                    let e = wire::graph_error(&resp, &format!("adding members to group {}", w.gid));
                    fail_all(t, refs, e);
                }
                // Already there, not replicated yet, or the batch item was not served:
                // member by member, with the consistency retry.
                _ => add_one_by_one(p, &w.gid, refs, t).await,
            },
            Kind::Remove(addr, uid) => {
                let answer = match answer {
                    Ok(resp)
                        if wire::is_not_found(&resp) && p.retry_until(&[&w.gid, uid]).is_some() =>
                    {
                        remove_direct(p, &w.gid, uid).await
                    }
                    Ok(resp) => Ok(resp),
                    Err(e) if e.class().retryable() => remove_direct(p, &w.gid, uid).await,
                    Err(e) => Err(e),
                };
                match answer {
                    // 404: not a member (any more): the set difference holds.
                    Ok(resp) if resp.ok() || resp.status == 404 => t.done += 1,
                    Ok(resp) => t.failed.push(ItemFailure {
                        item: addr.clone(),
                        error: wire::graph_error(
                            &resp,
                            &format!("removing {uid} from group {}", w.gid),
                        ),
                    }),
                    Err(e) => t.failed.push(ItemFailure {
                        item: addr.clone(),
                        error: e,
                    }),
                }
            }
        }
    }
    tallies.into_iter().map(finish).collect()
}

fn plan_work(op: &Op, i: usize, work: &mut Vec<Work>, t: &mut Tally) -> Result<(), ProviderError> {
    let (group, users, add) = match op {
        Op::AddGroupMembers { group, users } => (group, users, true),
        Op::RemoveGroupMembers { group, users } => (group, users, false),
        other => {
            return Err(ProviderError::Invalid(format!(
                "{} is not a membership change",
                other.kind().as_str()
            )))
        }
    };
    let gid = id_of(group)?.to_string();
    let members = users
        .iter()
        .map(|u: &ObjRef| Ok((u.address.to_string(), id_of(u)?.to_string())))
        .collect::<Result<Vec<_>, ProviderError>>()?;
    t.total = members.len();
    if add {
        for chunk in members.chunks(wire::BATCH_MAX) {
            work.push(Work {
                op: i,
                gid: gid.clone(),
                kind: Kind::Add(chunk.to_vec()),
            });
        }
    } else {
        for (addr, uid) in members {
            work.push(Work {
                op: i,
                gid: gid.clone(),
                kind: Kind::Remove(addr, uid),
            });
        }
    }
    Ok(())
}

fn fail_all(t: &mut Tally, refs: &[(String, String)], e: ProviderError) {
    t.failed.extend(refs.iter().map(|(addr, _)| ItemFailure {
        item: addr.clone(),
        error: e.clone(),
    }));
}

async fn add_one_by_one(p: &GraphProvider, gid: &str, refs: &[(String, String)], t: &mut Tally) {
    for (addr, uid) in refs {
        let req = wire::graph(
            "POST",
            format!("{V1}/groups/{gid}/members/$ref"),
            json!({ "@odata.id": p.object_ref(uid) }),
            false,
        );
        match p.send_dep(req, &[gid, uid]).await {
            Ok(resp) if resp.ok() || wire::is_already_there(&resp) => t.done += 1,
            Ok(resp) => t.failed.push(ItemFailure {
                item: addr.clone(),
                error: wire::graph_error(&resp, &format!("adding {uid} to group {gid}")),
            }),
            Err(e) => t.failed.push(ItemFailure {
                item: addr.clone(),
                error: e,
            }),
        }
    }
}

async fn remove_direct(
    p: &GraphProvider,
    gid: &str,
    uid: &str,
) -> Result<crate::provider::http::Response, ProviderError> {
    let req = wire::graph_bare("DELETE", format!("{V1}/groups/{gid}/members/{uid}/$ref"));
    p.send_dep(req, &[gid, uid]).await
}

fn finish(t: Tally) -> Result<Executed, ProviderError> {
    if let Some(e) = t.invalid {
        return Err(e);
    }
    if t.failed.is_empty() {
        return Ok(Executed::Done(Outcome::default()));
    }
    if t.done == 0 && t.failed.len() == t.total {
        // Nothing done: the op failed as a whole, with its first item's error (unless an
        // item's outcome is unknown: then the op's is too).
        if let Some(f) = t
            .failed
            .iter()
            .find(|f| matches!(f.error, ProviderError::OutcomeUnknown(_)))
        {
            return Err(f.error.clone());
        }
        return Err(t.failed[0].error.clone());
    }
    Err(ProviderError::Partial {
        done: t.done,
        total: t.total,
        failed: t.failed,
    })
}
