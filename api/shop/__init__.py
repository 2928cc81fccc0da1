"""The shop: products and their stock, orders (the seed's checkout, with a coupon), and checkout
sessions, over the ledger and PostgreSQL. No HTTP here: calls answer values (an ``Order``, a
``Session``) or raise a ``ShopError`` with its contract code; the routes (api/routes/checkout.py,
api/routes/sessions.py) render them.

- ``stock``: products, stock held for sessions, the rows a transaction locks and in what order;
- ``orders``: ``Checkout``, placing an order from a cart or from a session;
- ``records``: a session as stored, read and written in a given transaction;
- ``sessions``: ``Sessions``, the session calls (sync, coupon, stock hold);
- ``shoppers``: who calls a session (sealed by its client secret) and the cap on their holds;
- ``errors``: the refusals.
"""
