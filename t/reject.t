# Every way a token can be invalid: 401 and exactly one info-level line
# "token rejected: reason=<word> ...".  Each token is otherwise valid, so
# the reason word must name the one defect.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use MIME::Base64 qw(decode_base64url);
use Teleport::Test;
use Teleport::Token qw(
    mint key_id teleport_claims sign_raw b64url tamper_payload swap_signature
    alg_none hs256_with_public_pem es256_signature_to_der
);

my $rsa = test_key('rsa-main');
my $ec = test_key('ec-short');
my $other = test_key('rsa-other');
my $rsa_kid = key_id($rsa);
my $ec_kid = key_id($ec);
my $now = time;
my $json = JSON->new->utf8->canonical;

sub rs256 { mint(key => $rsa, kid => $rsa_kid, claims => teleport_claims(@_)) }

sub raw_rs256 {
    my ($header, $payload) = @_;
    return sign_raw(key => $rsa, alg => 'RS256', header => $header,
        payload => $payload // $json->encode(teleport_claims()));
}

sub raw_payload {
    my ($payload) = @_;
    return raw_rs256(qq({"alg":"RS256","kid":"$rsa_kid","typ":"JWT"}), $payload);
}

# Drop the last byte of the signature, keeping strict base64url.
sub truncate_signature {
    my ($token) = @_;
    my ($header, $payload, $signature) = split /\./, $token;
    return "$header.$payload." . b64url(substr decode_base64url($signature), 0, -1);
}

my $valid = rs256();
my $es256 = mint(key => $ec, kid => $ec_kid);
my $claims_json = $json->encode(teleport_claims());
(my $claims_with_second_sub = $claims_json) =~ s/^\{/{"sub":"mallory",/;

my @cases = (
    [ 'one segment',                 malformed => 'notajwt' ],
    [ 'two segments',                malformed => join('.', (split /\./, $valid)[0, 1]) ],
    [ 'four segments',               malformed => "$valid.AAAA" ],
    [ 'not base64url',               malformed => ($valid =~ s/^(.{10})./$1*/r) ],
    [ 'base64 padding',              malformed => "$valid==" ],

    [ 'header is an array',          bad_header => raw_rs256('["RS256"]') ],
    [ 'header is not JSON',          bad_header => raw_rs256('alg=RS256') ],
    [ 'header with duplicate alg',   bad_header => raw_rs256(
        qq({"alg":"ES256","alg":"RS256","kid":"$rsa_kid","typ":"JWT"})) ],
    [ 'header with crit',            bad_header => raw_rs256(
        qq({"alg":"RS256","crit":["exp"],"kid":"$rsa_kid","typ":"JWT"})) ],
    [ 'header kid not a string',     bad_header => raw_rs256(
        qq({"alg":"RS256","kid":42,"typ":"JWT"})) ],

    [ 'alg none, empty signature',   alg_not_allowed => alg_none(teleport_claims()) ],
    [ 'alg none with signature',     alg_not_allowed => alg_none(teleport_claims(), 'AAAA') ],
    [ 'HS256 keyed with RSA PEM',    alg_not_allowed => hs256_with_public_pem($rsa, teleport_claims(), $rsa_kid) ],
    [ 'RS512 not allowed',           alg_not_allowed => mint(key => $rsa, alg => 'RS512', kid => $rsa_kid) ],

    [ 'unknown kid',                 unknown_kid => mint(key => $rsa, kid => 'no-such-key-id') ],

    [ 'ES256 with RSA kid',          key_mismatch => mint(key => $ec, kid => $rsa_kid) ],
    [ 'RS256 with EC kid',           key_mismatch => mint(key => $rsa, kid => $ec_kid) ],

    [ 'payload changed',             bad_signature => tamper_payload($valid, sub { $_[0]{username} = 'admin' }) ],
    [ 'signature of other token',    bad_signature => swap_signature($valid, rs256(sub => 'bob', username => 'bob')) ],
    [ 'other key, known kid',        bad_signature => mint(key => $other, kid => $rsa_kid) ],
    [ 'other key, no kid',           bad_signature => mint(key => $other) ],
    [ 'ES256 signature in DER',      bad_signature => es256_signature_to_der($es256) ],
    [ 'ES256 signature of 63 bytes', bad_signature => truncate_signature($es256) ],

    [ 'payload is an array',         bad_payload => raw_payload('["alice"]') ],
    [ 'payload is not JSON',         bad_payload => raw_payload('username=alice') ],
    [ 'payload with duplicate sub',  bad_payload => raw_payload($claims_with_second_sub) ],

    [ 'exp is a string',             bad_claim => rs256(exp => '' . ($now + 600)) ],
    [ 'roles is a string',           bad_claim => rs256(roles => 'access') ],
    [ 'trait value with newline',    bad_claim => rs256(traits => { logins => [ "alice\nroot" ] }) ],

    [ 'no exp',                      missing_exp => rs256(exp => undef) ],
    [ 'expired an hour ago',         expired => rs256(iat => $now - 4200, nbf => $now - 4210, exp => $now - 3600) ],
    [ 'nbf in an hour',              not_yet_valid => rs256(nbf => $now + 3600) ],
    [ 'iat in an hour',              issued_in_future => rs256(iat => $now + 3600) ],

    [ 'other audience',              bad_audience => rs256(aud => 'http://localhost:9090') ],
    [ 'audience array, no match',    bad_audience => rs256(aud => [ 'http://localhost:9090' ]) ],
    [ 'audience prefix only',        bad_audience => rs256(aud => 'http://localhost:8080/app') ],
    [ 'no audience',                 bad_audience => rs256(aud => undef) ],

    [ 'other issuer',                bad_issuer => rs256(iss => 'evil.example.com') ],
    [ 'no issuer',                   bad_issuer => rs256(iss => undef) ],

    [ 'no username',                 missing_user => rs256(username => undef) ],

    [ 'empty username',              bad_user => rs256(username => '') ],
    [ 'numeric username',            bad_user => rs256(username => 42) ],
    [ 'username with newline',       bad_user => rs256(username => "alice\nadmin") ],
    [ 'username with bidi override', bad_user => rs256(username => "alice\x{202E}nimda") ],
);

plan tests => REJECT_CHECKS * (@cases + 1), need_module('cgid');

for my $case (@cases) {
    my ($name, $reason, $token) = @$case;
    expect_rejected($name, path => '/reject/env', token => $token, reason => $reason);
}

# Two assertion headers, each with a valid token: httpd joins them, and the
# module must not pick one.
expect_rejected('two assertion headers', path => '/reject/env',
    headers => [ 'Teleport-Jwt-Assertion' => [ $valid, rs256(sub => 'bob', username => 'bob') ] ],
    reason => 'multiple_headers');
