# TeleportForwardAssertion: with On (the default) the backend behind
# mod_proxy receives the token header, with Off it does not, for the
# default header and for "TeleportHeader Authorization".  The backend is
# the echo server of t/TEST, which reports whether each of the two headers
# arrived (never their values).  Locations in t/conf/extra_authz.conf.in.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Teleport::Test;
use Teleport::Token qw(mint key_id);

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

# name, path, header carrying the token, header name as the echo server
# reports it, whether the backend must receive it
my @cases = (
    [ 'On',                  '/authz-fwd-on/',         undef,           'teleport-jwt-assertion', 1 ],
    [ 'Off',                 '/authz-fwd-off/',        undef,           'teleport-jwt-assertion', 0 ],
    [ 'Authorization, On',   '/authz-fwd-bearer-on/',  'Authorization', 'authorization',          1 ],
    [ 'Authorization, Off',  '/authz-fwd-bearer-off/', 'Authorization', 'authorization',          0 ],
);

plan tests => @cases * 4 + 2, need_module('proxy', 'proxy_http');

# Request $path and return the response and the headers the backend
# received.
sub backend_headers {
    my ($name, %args) = @_;
    my $response = send_request(%args);
    my $echo = eval { JSON->new->decode($response->decoded_content) } || {};
    note("$name: got " . $response->code . ', backend headers '
        . JSON->new->canonical->encode($echo->{headers} || {}));
    return ($response, $echo->{headers} || {});
}

for my $case (@cases) {
    my ($name, $path, $header, $echo_name, $forwarded) = @$case;
    my $value = defined $header ? "Bearer $token" : $token;
    my ($response, $headers) = backend_headers($name, path => $path,
        token => $value, (defined $header ? (header => $header) : ()));

    is($response->code, 200, "$name: status");
    ok(scalar keys %$headers, "$name: backend reached");
    is($headers->{$echo_name}, $forwarded ? '(present)' : undef,
       "$name: token header " . ($forwarded ? 'forwarded' : 'removed'));
    # The other assertion header never appears on its own.
    my $other = $echo_name eq 'authorization' ? 'teleport-jwt-assertion' : 'authorization';
    is($headers->{$other}, undef, "$name: no $other header");
}

# Without a token the request stops at 401 before mod_proxy runs.
my ($response, $headers) = backend_headers('Off, no token', path => '/authz-fwd-off/');
is($response->code, 401, 'Off, no token: status');
is(scalar keys %$headers, 0, 'Off, no token: backend not reached');
