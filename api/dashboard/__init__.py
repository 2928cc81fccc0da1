"""The retailers' and auditors' dashboard: server-rendered page shells and the static files that
fill them from the API in the browser, with the secret key kept in the tab's session storage."""
