"""Talking OAuth 2.0 to a provider: from the client's parameters to a validated token answer.

Data flows one way through these modules, each importing only those above it::

    params         OAuth2Parameters: the client, validated (pure)
    pkce           PKCE verifier / S256 challenge and state values (pure)
    authz          the authorization request URL, and the judgement of a callback (pure)
    requesthead    reading and screening one request on the loopback receiver (pure)
    pages          the small HTML pages the receiver answers with (pure)
    loopback       the loopback receiver: binds, serves, hands the callback to authz (I/O)
    tokenresponse  TokenState and the strict parsing of token answers (pure)
    httpclient     the one HTTP client of the token endpoint side (I/O)
    endpoint       code exchange, refresh, revocation: forms in, TokenState out (I/O)
    browser        the browser login: parameters -> authorization request -> callback ->
                   token endpoint -> TokenState (composes the modules above)
    assertions     signed RFC 7523 JWT assertions (private_key_jwt, JWT bearer): keys and
                   certificates checked, signing by joserfc (pure)
    appgrants      ClientCredentials and the app-only grants: form (pure) and request (I/O)

Nothing here keeps tokens: the caller (``oauthsmtp._tokens``) saves the
:class:`~oauthsmtp._oauth.tokenresponse.TokenState` it gets back. The rules these
modules enforce are written down in docs/security.md.
"""
