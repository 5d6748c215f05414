# Subrequests and internal redirects reach a protected target with the
# identity of the main request: a mod_include "include virtual", a
# DirectoryIndex naming a CGI (mod_dir), "ErrorDocument 404" and a
# mod_rewrite rule in directory context.  The locations are in
# t/conf/extra_authz.conf.in, and every target is /authz-sub/env unless a
# case names another.
#
# The target applies its own checks to the token that the main request
# verified, so a token whose audience only the main location accepts is
# rejected there.  The signature is verified once per request.  The -file
# locations verify with the static JWKS file, whose key the key set of
# /authz-sub/ lacks, so the target accepts the token only because it does
# not verify the signature again.  Sent to the target directly, the same
# token is rejected.  With TeleportForwardAssertion Off the token header is
# gone before the subrequest or redirect starts, and the target still gets
# the identity.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Teleport::Authz qw(make_site);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));
my $wide = mint(key => $key, kid => key_id($key),
                claims => teleport_claims(aud => 'http://authz-wide.example'));
my $static_key = test_key('rsa-static');
my $static = mint(key => $static_key, kid => key_id($static_key));

# mod_include's message for a failed directive.
my $SSI_ERROR = '[an error occurred while processing this directive]';

# name, path, token, expected status; the target is reached with alice.
my @reached = (
    [ 'include virtual',            '/authz-ssi/page.shtml',      $token,  200 ],
    [ 'DirectoryIndex',             '/authz-dir/',                $token,  200 ],
    [ 'ErrorDocument',              '/authz-err/missing',         $token,  404 ],
    [ 'RewriteRule',                '/authz-rw/any',              $token,  200 ],
    [ 'include virtual, assertion Off', '/authz-ssi-off/page.shtml', $token, 200 ],
    [ 'DirectoryIndex, assertion Off',  '/authz-dir-off/',        $token,  200 ],
    [ 'ErrorDocument, assertion Off',   '/authz-err-off/missing', $token,  404 ],
    [ 'RewriteRule, assertion Off',     '/authz-rw-off/any',      $token,  200 ],
    [ 'include virtual, file keys', '/authz-ssi-file/page.shtml', $static, 200 ],
    [ 'ErrorDocument, file keys',   '/authz-err-file/missing',    $static, 404 ],
    [ 'RewriteRule, file keys',     '/authz-rw-file/any',         $static, 200 ],
);

# name, path, expected status: $wide passes the main location's audience
# check and fails the target's.
my @audience_rejected = (
    [ 'include virtual',  '/authz-ssi/page.shtml',  200 ],
    [ 'DirectoryIndex',   '/authz-dir/',            401 ],
    [ 'ErrorDocument',    '/authz-err/missing',     404 ],
    [ 'RewriteRule',      '/authz-rw/any',          401 ],
);

plan tests => @reached * 9 + @audience_rejected * 4 + 11 + REJECT_CHECKS,
    need_module('cgid', 'dir');

make_site();

# The JSON that env.pl printed in the target, and for an .shtml page the
# TELEPORT_USER that the page itself saw.
sub target_env {
    my ($response) = @_;
    my $body = $response->decoded_content // '';
    my $main_user = $body =~ s/^main-user=(.*)\n// ? $1 : undef;
    my $env = eval { JSON->new->decode($body) };
    return (ref $env eq 'HASH' ? $env : {}, $main_user);
}

my $main_hits = jwks_hits('authz-main');
for my $case (@reached) {
    my ($name, $path, $sent, $status) = @$case;
    my $offset = error_log_offset();
    my $response = send_request(path => $path, token => $sent);
    my @log = error_log_since($offset);
    my ($env, $main_user) = target_env($response);
    note("$name: got " . $response->code . ', target saw '
        . JSON->new->canonical->encode($env));
    note("$name: error_log: $_") for @log;
    my $assertion_kept = $path =~ m{-off/} ? 0 : 1;

    is($response->code, $status, "$name: status");
    is(scalar rejection_lines(@log), 0, "$name: no token rejected");
    is($env->{REMOTE_USER}, 'alice', "$name: REMOTE_USER");
    is($env->{AUTH_TYPE}, 'Teleport', "$name: AUTH_TYPE");
    is($env->{TELEPORT_USER}, 'alice', "$name: TELEPORT_USER");
    is($env->{TELEPORT_ROLES}, 'access,editor', "$name: TELEPORT_ROLES");
    is($env->{TELEPORT_TRAIT_LOGINS}, 'alice,root', "$name: TELEPORT_TRAIT_LOGINS");
    is($env->{HAS_ASSERTION_HEADER}, $assertion_kept, "$name: assertion header "
        . ($assertion_kept ? 'kept' : 'removed'));
    if ($path =~ /\.shtml$/) {
        is($main_user, 'alice', "$name: TELEPORT_USER of the page");
    }
    else {
        is($env->{TELEPORT_ISSUER}, 'teleport.example.com', "$name: TELEPORT_ISSUER");
    }
}

# A fetch would mean that a subrequest or redirect with file keys looked
# for the token's key in /authz-sub/'s key set.
my $fetches = jwks_hits('authz-main') - $main_hits;
note("authz-main JWKS fetched $fetches times during the requests above");
is($fetches, 0, 'targets load no keys for an inherited token');

for my $case (@audience_rejected) {
    my ($name, $path, $status) = @$case;
    my $offset = error_log_offset();
    my $response = send_request(path => $path, token => $wide);
    my @log = error_log_since($offset);
    my @rejections = rejection_lines(@log);
    my ($env) = target_env($response);
    note("$name, other audience: got " . $response->code);
    note("$name, other audience: error_log: $_") for @log;

    is($response->code, $status, "$name, other audience: status");
    is(scalar @rejections, 1, "$name, other audience: one rejection line");
    like($rejections[0] // '', qr/reason=bad_audience .* uri=\/authz-sub\/env: /,
         "$name, other audience: rejected by the target");
    is($env->{REMOTE_USER}, undef, "$name, other audience: target not run");
}

my $response = send_request(path => '/authz-ssi/page.shtml', token => $wide);
like($response->decoded_content // '', qr/^main-user=alice\n\Q$SSI_ERROR\E/,
     'include virtual, other audience: page served, include failed');

# The target's Require rules apply to the inherited token:
# /authz-ssi/role.shtml includes /authz-role/env, which requires the role
# editor or admin.
for my $case ([ 'editor', $token, 'alice' ],
              [ 'access only', mint(key => $key, kid => key_id($key),
                                    claims => teleport_claims(roles => [ 'access' ])), undef ]) {
    my ($name, $sent, $user) = @$case;
    my $label = "include, role rule, $name";
    my $offset = error_log_offset();
    $response = send_request(path => '/authz-ssi/role.shtml', token => $sent);
    my @log = error_log_since($offset);
    my ($env, $main_user) = target_env($response);
    note("$label: got " . $response->code . ', body ' . ($response->decoded_content // ''));
    note("$label: error_log: $_") for @log;
    is($main_user, 'alice', "$label: page served");
    is($env->{REMOTE_USER}, $user, "$label: target " . ($user ? 'run' : 'denied'));
    is(scalar rejection_lines(@log), 0, "$label: no token rejected");
}

# A target with another TeleportUserClaim takes the user from its own
# claim.
my $subject = mint(key => $key, kid => key_id($key),
                   claims => teleport_claims(sub => 'alice-subject'));
$response = send_request(path => '/authz-ssi/user-sub.shtml', token => $subject);
my ($env, $main_user) = target_env($response);
note('include virtual, sub claim: got ' . $response->code . ', target saw '
    . JSON->new->canonical->encode($env));
is($main_user, 'alice', 'include virtual, sub claim: TELEPORT_USER of the page');
is($env->{REMOTE_USER}, 'alice-subject', 'include virtual, sub claim: REMOTE_USER of the target');

# The contrast that makes the file keys cases above meaningful.
expect_rejected('file keys token sent to the target', path => '/authz-sub/env',
    token => $static, reason => 'unknown_kid');
$response = send_request(path => '/authz-sub/env', token => $token);
is($response->code, 200, 'main keys token sent to the target: status');
