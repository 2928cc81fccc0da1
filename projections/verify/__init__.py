"""`coupon-ledger verify`: check the ledger's invariants against the database; name every violation.

One pass over the event log, in notification order, a page at a time (audit.py, holds.py), checks:

- every redemption: final_total = original_subtotal - discount_amount >= 0; recorded on its coupon
  (Coupon.Redeemed) and as itself (Redemption.Recorded), for the same coupon and discount;
- per coupon: live uses (Redeemed - RedemptionReversed) plus the holds live at each Redeemed and
  Reserved never above max_uses as it stood (a PATCH may lower max_uses below the uses made: no
  violation until the next use); a Redeemed that confirms a hold is a use like any other;
- reversals: each RedemptionReversed gives back a redemption of that coupon for the same discount,
  and matches that redemption's own Redemption.Reversed; none is reversed twice;
- per customer and per campaign: the limits in force with live holds, and the CustomerUsage and
  Campaign counters equal to what the live redemptions add up to;
- holds: each is one Reservation, held on its coupon, ended at most once, a confirmed one's
  redemption recorded and named by its coupon's Redeemed; the holds left open are the Reservations
  still held.

Then (orders.py, read_model.py): every order placed with a coupon agrees with its redemption; the
read model's uses_count and reservations rows agree with the log through its tracking position.
"""

from projections.verify.run import verify
from projections.verify.state import Report

__all__ = ["Report", "verify"]
