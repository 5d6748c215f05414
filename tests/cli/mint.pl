#!/usr/bin/perl
# Build the JWKS documents and tokens that tests/cli/run.sh feeds to
# teleport-jwt-verify, from private keys in PEM that the openssl command
# generated.  Tokens are signed by Crypt::JWT, an implementation independent
# of the verifier under test.  "raw" signs bytes that Crypt::JWT would not
# produce (duplicate members, other headers) with Crypt::PK.
#
#   mint.pl claims NOW [NAME=JSON|NAME-] ... the claims of a Teleport token
#                                            for alice issued at NOW, with
#                                            NAME set to JSON or removed
#   mint.pl jwks KEY.pem=KID ...             a JWKS listing each key twice,
#                                            with KID and with "kid": "", as
#                                            Teleport 16 and later do
#   mint.pl token KEY.pem ALG KID CLAIMS     a compact JWS over the JSON
#                                            object CLAIMS, without "kid"
#                                            when KID is "-"
#   mint.pl raw KEY.pem ALG HEADER PAYLOAD   a compact JWS over the header
#                                            and payload texts as given
use strict;
use warnings;

use Crypt::JWT qw(encode_jwt);
use Crypt::PK::ECC ();
use Crypt::PK::RSA ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);

my $json = JSON::PP->new->canonical;

sub load_key {
    my ($path) = @_;
    open my $fh, '<', $path or die "mint.pl: cannot read $path: $!\n";
    my $pem = do { local $/; <$fh> };
    close $fh;
    # openssl genpkey writes PKCS#8; Crypt::PK::ECC rejects RSA keys.
    my $ec = eval { Crypt::PK::ECC->new(\$pem) };
    return $ec if $ec;
    return Crypt::PK::RSA->new(\$pem);
}

sub jwk {
    my ($key, $kid) = @_;
    my $jwk = $key->export_key_jwk('public', 1);
    my $alg = $jwk->{kty} eq 'EC' ? 'ES256' : 'RS256';
    return { %$jwk, alg => $alg, use => 'sig', kid => $kid };
}

sub jwks {
    my (@specs) = @_;
    my @keys;
    for my $spec (@specs) {
        my ($path, $kid) = split /=/, $spec, 2;
        die "mint.pl: jwks expects KEY.pem=KID, got $spec\n" unless defined $kid;
        my $key = load_key($path);
        push @keys, jwk($key, $kid), jwk($key, '');
    }
    return $json->encode({ keys => \@keys });
}

sub claims {
    my ($now, @changes) = @_;
    my %claims = (
        iss      => 'teleport.example.com',
        sub      => 'alice',
        username => 'alice',
        aud      => 'http://localhost:8080',
        roles    => [ 'access', 'editor' ],
        traits   => { logins => [ 'alice', 'root' ] },
        iat      => $now + 0,
        nbf      => $now - 10,
        exp      => $now + 600,
    );
    for my $change (@changes) {
        if ($change =~ /^([^=]+)-$/) {
            delete $claims{$1};
        }
        elsif ($change =~ /^([^=]+)=(.*)$/s) {
            $claims{$1} = JSON::PP->new->allow_nonref->decode($2);
        }
        else {
            die "mint.pl: claims expects NAME=JSON or NAME-, got $change\n";
        }
    }
    return $json->encode(\%claims);
}

sub token {
    my ($path, $alg, $kid, $claims) = @_;
    my %header = (typ => 'JWT');
    $header{kid} = $kid unless $kid eq '-';
    return encode_jwt(
        payload       => $json->decode($claims),
        key           => load_key($path),
        alg           => $alg,
        extra_headers => \%header,
    );
}

sub raw {
    my ($path, $alg, $header, $payload) = @_;
    my $key = load_key($path);
    my $input = encode_base64url($header) . '.' . encode_base64url($payload);
    my $signature = $alg eq 'ES256'
        ? $key->sign_message_rfc7518($input, 'SHA256')
        : $key->sign_message($input, 'SHA256', 'v1.5');
    return "$input." . encode_base64url($signature);
}

my $command = shift @ARGV // '';
if ($command eq 'claims' && @ARGV) {
    print claims(@ARGV), "\n";
}
elsif ($command eq 'jwks' && @ARGV) {
    print jwks(@ARGV), "\n";
}
elsif ($command eq 'token' && @ARGV == 4) {
    print token(@ARGV), "\n";
}
elsif ($command eq 'raw' && @ARGV == 4) {
    print raw(@ARGV), "\n";
}
else {
    die "usage: mint.pl claims NOW [NAME=JSON|NAME-] ... | jwks KEY.pem=KID"
        . " ... | token KEY.pem ALG KID CLAIMS | raw KEY.pem ALG HEADER"
        . " PAYLOAD\n";
}
