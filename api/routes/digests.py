"""/v1/audit/digest, /v1/audit/public-key and /v1/coupons/{code}/proof: what lets an auditor check
later that the log was not rewritten or cut, without trusting us then."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api import throttle
from api.deps import CallerDep
from api.errors import ApiError
from api.openapi import errors
from api.schemas import PATH_CODE_PATTERN
from api.schemas.digests import DigestPublic, ProofPublic, PublicKeyPublic
from ledger.errors import CouponNotFound
from ledger.timestamps import format_timestamp

router = APIRouter(tags=["audit"])

Position = Annotated[
    int | None,
    Query(ge=1, description="A log position (notification id); the newest when omitted.", examples=[1042]),
]


def _position(requested: int | None, newest: int) -> int:
    if requested is None:
        return newest
    if requested > newest:
        raise ApiError(
            "VALIDATION_FAILED",
            "The request is not valid.",
            errors=[{"field": "position", "message": f"past the newest position of the log ({newest})"}],
        )
    return requested


@router.get("/v1/audit/digest", responses=errors({422: ["VALIDATION_FAILED"]}))
def audit_digest(caller: CallerDep, position: Position = None) -> DigestPublic:
    """A signed digest of every stream of the retailer up to `position`."""
    services = caller.services
    audit = services.audit_log
    at = _position(position, audit.position())
    tree = audit.tree(caller.retailer_id, at)
    body = {
        "retailer_id": str(caller.retailer_id),
        "position": tree.position,
        "events": tree.events,
        "streams": tree.streams,
        "root": tree.root,
        "issued_at": format_timestamp(services.ledger.clock()),
    }
    return DigestPublic(**services.signer.sign(body))


@router.get("/v1/audit/public-key")
def audit_public_key(caller: CallerDep) -> PublicKeyPublic:
    """The Ed25519 key that signs digests."""
    return PublicKeyPublic(**caller.services.signer.public_key())


@router.get(
    "/v1/coupons/{code}/proof",
    responses=errors({404: ["COUPON_NOT_FOUND"], 422: ["VALIDATION_FAILED"], 429: ["RATE_LIMITED"]}),
)
def coupon_proof(
    code: Annotated[str, Path(json_schema_extra={"pattern": PATH_CODE_PATTERN, "examples": ["SAVE10"]})],
    caller: CallerDep,
    request: Request,
    position: Position = None,
) -> ProofPublic:
    """The audit path from the coupon's head at `position` to the root of the digest at `position`;
    COUPON_NOT_FOUND if it had no event by then."""
    services = caller.services
    with throttle.guard(request, caller):
        coupon = services.ledger.get_coupon(caller.retailer_id, code, archived=True)
    audit = services.audit_log
    at = _position(position, audit.position())
    proof = audit.proof(caller.retailer_id, coupon.id, at)
    if proof is None:
        raise CouponNotFound(f"Coupon {coupon.code} did not exist at position {at}.", code=coupon.code)
    return ProofPublic(
        code=coupon.code,
        stream=str(proof.stream),
        position=at,
        version=proof.version,
        head_hash=proof.head_hash,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        path=proof.path,
        root=proof.root,
    )
