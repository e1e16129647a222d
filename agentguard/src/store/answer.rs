//! What an answer does to a pending request: the one transition every store applies inside its own lock or
//! transaction, so the in-memory, SQLite and PostgreSQL stores decide alike (kinds of answer, quorum votes,
//! standing grants).

use crate::request::{AnswerKind, ApprovalRequest, GrantScope, Resolution, ResolveOutcome, Vote};
use crate::store::{Decision, Grant, RequestState};

/// What a store does with an answer to a request it found pending and within its deadline.
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing changes; the answer gets this outcome.
    Refuse(ResolveOutcome),
    /// A vote is counted; the request stays pending with this decision (its votes so far).
    Vote(Decision),
    /// The request is decided: store this decision (and this grant, in the same transaction).
    Decide(Decision, Option<Box<Grant>>),
}

impl Step {
    /// The outcome the answerer gets.
    pub(crate) fn outcome(&self) -> ResolveOutcome {
        match self {
            Step::Refuse(outcome) => *outcome,
            Step::Vote(_) => ResolveOutcome::VoteRecorded,
            Step::Decide(..) => ResolveOutcome::Resolved,
        }
    }
}

/// Applies `answer` to `request`, pending with `current` (its votes so far), at `now_ms`. The caller has checked
/// that the request exists, is pending and is within its deadline.
pub(crate) fn step(request: &ApprovalRequest, current: &Decision, answer: &Resolution, now_ms: u64) -> Step {
    use ResolveOutcome as O;
    if answer
        .get_params_digest()
        .is_some_and(|shown| shown != request.params_digest())
    {
        return Step::Refuse(O::DigestMismatch);
    }
    let actor = answer.get_actor();
    if actor.is_some_and(|a| request.excluded().iter().any(|x| x == a)) {
        return Step::Refuse(O::OwnRequest);
    }
    let kind = answer.kind();
    match kind {
        AnswerKind::Edit => {
            if request.edit_refused().is_some() || !answer.get_edited().is_some_and(|v| v.is_object()) {
                return Step::Refuse(O::NotAllowedHere);
            }
        }
        AnswerKind::Respond => {
            if answer
                .get_response()
                .is_none_or(|t| Resolution::check_response(t).is_err())
            {
                return Step::Refuse(O::NotAllowedHere);
            }
        }
        AnswerKind::Approve | AnswerKind::Deny => {}
    }
    let grant = match answer.get_remember() {
        None => None,
        Some(spec) => {
            let scoped = match spec.get_scope() {
                GrantScope::Session => request.session_id().is_some(),
                GrantScope::Agent => request.agent_id().is_some(),
                GrantScope::Everyone => true,
            };
            if request.remember_refused().is_some() || request.quorum().is_some() || !scoped || spec.check().is_err() {
                return Step::Refuse(O::NotAllowedHere);
            }
            Some(Box::new(Grant::from_spec(request, spec, actor, now_ms)))
        }
    };
    let Some(quorum) = request.quorum() else {
        let state = match kind {
            AnswerKind::Approve | AnswerKind::Edit => RequestState::Approved,
            AnswerKind::Deny => RequestState::Denied,
            AnswerKind::Respond => RequestState::Responded,
        };
        let decision = Decision {
            state,
            actor: actor.map(str::to_owned),
            note: answer.get_note().map(str::to_owned),
            kind: Some(kind),
            edited: answer.get_edited().cloned(),
            response: answer.get_response().map(str::to_owned),
            grant: grant.as_ref().map(|g| g.id.clone()),
            votes: Vec::new(),
        };
        return Step::Decide(decision, grant);
    };
    // A quorum counts approvals and denials of named people; an edit or a response would have one person decide.
    let Some(actor) = actor else {
        return Step::Refuse(O::NotAnApprover);
    };
    if !quorum.admits(actor) {
        return Step::Refuse(O::NotAnApprover);
    }
    if !matches!(kind, AnswerKind::Approve | AnswerKind::Deny) {
        return Step::Refuse(O::NotAllowedHere);
    }
    if current.votes.iter().any(|v| v.actor == actor) {
        return Step::Refuse(O::AlreadyVoted);
    }
    let mut votes = current.votes.clone();
    votes.push(Vote::now(
        actor,
        kind == AnswerKind::Approve,
        answer.get_note().map(str::to_owned),
    ));
    let count = |approve: bool| votes.iter().filter(|v| v.approve == approve).count() as u32;
    let decided = if count(true) >= quorum.needed.max(1) {
        Some((RequestState::Approved, true))
    } else if count(false) >= quorum.denials.max(1) {
        Some((RequestState::Denied, false))
    } else {
        None
    };
    match decided {
        None => Step::Vote(Decision {
            votes,
            ..Decision::of(RequestState::Pending)
        }),
        Some((state, approve)) => {
            let deciders: Vec<&str> = votes
                .iter()
                .filter(|v| v.approve == approve)
                .map(|v| v.actor.as_str())
                .collect();
            Step::Decide(
                Decision {
                    state,
                    actor: Some(deciders.join(", ")),
                    note: answer.get_note().map(str::to_owned),
                    kind: Some(kind),
                    edited: None,
                    response: None,
                    grant: None,
                    votes,
                },
                None,
            )
        }
    }
}

/// What a database store does with an answer to a pending request whose stored form cannot be read back (params
/// nested too deep, a damaged row): its quorum, excluded actors and refusals are unknown, so only a plain denial
/// (which can never make anything run) ends it; every other answer is refused and nothing changes.
/// `params_digest` is the digest kept beside the row.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn step_unreadable(params_digest: &str, answer: &Resolution) -> Step {
    if answer
        .get_params_digest()
        .is_some_and(|shown| shown.as_str() != params_digest)
    {
        return Step::Refuse(ResolveOutcome::DigestMismatch);
    }
    if answer.kind() != AnswerKind::Deny || answer.get_remember().is_some() {
        return Step::Refuse(ResolveOutcome::NotAllowedHere);
    }
    Step::Decide(
        Decision {
            actor: answer.get_actor().map(str::to_owned),
            note: answer.get_note().map(str::to_owned),
            kind: Some(AnswerKind::Deny),
            ..Decision::of(RequestState::Denied)
        },
        None,
    )
}
