package Teleport::Token;

# Test keys, JWKS documents and tokens in the shapes Teleport's application
# access sends (lib/jwt in Teleport: RS256 for the legacy signature suite,
# ES256 for balanced-v1), plus helpers that damage tokens on purpose.

use strict;
use warnings;

use Carp qw(croak);
use Crypt::JWT qw(encode_jwt);
use Crypt::PK::ECC ();
use Crypt::PK::RSA ();
use Digest::SHA qw(sha256 hmac_sha256);
use Exporter qw(import);
use JSON ();
use MIME::Base64 qw(encode_base64url decode_base64url);

our @EXPORT_OK = qw(
    new_rsa_key new_ec_key new_ec_key_with_short_coordinate save_key load_key
    key_id public_key_der jwk jwks_v14 jwks_v16 jwks_v17 write_jwks write_file
    teleport_claims mint sign_raw b64url
    tamper_payload swap_signature alg_none hs256_with_public_pem
    es256_signature_to_der split_token decode_part
);

my $json = JSON->new->utf8->canonical;

# Prefix of the DER SubjectPublicKeyInfo of a P-256 key with the named-curve
# OID (RFC 5480), followed by the uncompressed point 04 || X || Y.
my $P256_SPKI_PREFIX = pack 'H*',
    '3059301306072a8648ce3d020106082a8648ce3d030107034200';

sub b64url {
    my ($bytes) = @_;
    return encode_base64url($bytes);
}

sub new_rsa_key {
    my ($bits) = @_;
    $bits //= 2048;
    my $key = Crypt::PK::RSA->new;
    $key->generate_key($bits / 8, 65537);
    return $key;
}

sub new_ec_key {
    my $key = Crypt::PK::ECC->new;
    $key->generate_key('secp256r1');
    return $key;
}

# Generate P-256 keys until X or Y starts with a zero byte, so that Teleport's
# JWK (big.Int.Bytes(), no left padding) carries a coordinate of 31 bytes.
# About 1 key in 128 qualifies; the loop gives up after 20000 tries.
sub new_ec_key_with_short_coordinate {
    for (1 .. 20000) {
        my $key = new_ec_key();
        my ($x, $y) = ec_coordinates($key);
        return $key if substr($x, 0, 1) eq "\0" || substr($y, 0, 1) eq "\0";
    }
    croak 'no P-256 key with a leading zero byte in X or Y after 20000 tries';
}

sub save_key {
    my ($key, $path) = @_;
    write_file($path, $key->export_key_pem('private'), 0600);
    return;
}

sub load_key {
    my ($path) = @_;
    my $pem = read_file($path);
    my $type = $pem =~ /BEGIN EC PRIVATE KEY/ ? 'Crypt::PK::ECC' : 'Crypt::PK::RSA';
    return $type->new(\$pem);
}

sub is_ec {
    my ($key) = @_;
    return ref($key) eq 'Crypt::PK::ECC';
}

# Return X and Y of a P-256 key as 32-byte strings.
sub ec_coordinates {
    my ($key) = @_;
    my $hash = $key->key2hash;
    my $x = pack 'H*', sprintf('%064s', $hash->{pub_x}) =~ tr/ /0/r;
    my $y = pack 'H*', sprintf('%064s', $hash->{pub_y}) =~ tr/ /0/r;
    return ($x, $y);
}

# Encode a non-negative integer given as big-endian bytes as a DER INTEGER.
sub der_integer {
    my ($bytes) = @_;
    $bytes =~ s/^\0+//;
    $bytes = "\0" if $bytes eq '';
    $bytes = "\0$bytes" if ord($bytes) & 0x80;
    return "\x02" . der_length(length $bytes) . $bytes;
}

sub der_length {
    my ($length) = @_;
    return chr($length) if $length < 128;
    my $bytes = '';
    while ($length) {
        $bytes = chr($length & 0xff) . $bytes;
        $length >>= 8;
    }
    return chr(0x80 | length $bytes) . $bytes;
}

sub der_sequence {
    my ($content) = @_;
    return "\x30" . der_length(length $content) . $content;
}

sub rsa_modulus_and_exponent {
    my ($key) = @_;
    my $hash = $key->key2hash;
    my $n_hex = $hash->{N};
    my $e_hex = $hash->{e};
    $n_hex = "0$n_hex" if length($n_hex) % 2;
    $e_hex = "0$e_hex" if length($e_hex) % 2;
    return (pack('H*', $n_hex), pack('H*', $e_hex));
}

# DER PKCS#1 RSAPublicKey (RFC 8017 appendix A.1.1) or DER
# SubjectPublicKeyInfo (RFC 5480) of an EC key: what Teleport hashes into kid.
sub public_key_der {
    my ($key) = @_;
    if (is_ec($key)) {
        my ($x, $y) = ec_coordinates($key);
        return "$P256_SPKI_PREFIX\x04$x$y";
    }
    my ($n, $e) = rsa_modulus_and_exponent($key);
    return der_sequence(der_integer($n) . der_integer($e));
}

# Teleport's key id: base64url (no padding) of SHA-256 over public_key_der.
sub key_id {
    my ($key) = @_;
    return b64url(sha256(public_key_der($key)));
}

# One JWK as Teleport writes it.  Numbers are big-endian without leading zero
# bytes, so an EC coordinate can be shorter than 32 bytes.
sub jwk {
    my ($key, $kid) = @_;
    $kid //= key_id($key);
    if (is_ec($key)) {
        my ($x, $y) = map { s/^\0+//r } ec_coordinates($key);
        return { kty => 'EC', alg => 'ES256', use => 'sig', kid => $kid,
                 crv => 'P-256', x => b64url($x), y => b64url($y) };
    }
    my ($n, $e) = map { s/^\0+//r } rsa_modulus_and_exponent($key);
    return { kty => 'RSA', alg => 'RS256', use => 'sig', kid => $kid,
             n => b64url($n), e => b64url($e) };
}

# Teleport before the kid change: each key once, with "kid": "".
sub jwks_v14 {
    my (@keys) = @_;
    return { keys => [ map { jwk($_, '') } @keys ] };
}

# Teleport since 2024 (v15.4.20, v16.4.3): each key twice, with its kid and
# with "kid": "", so that kid-less tokens of older agents still verify.
sub jwks_v16 {
    my (@keys) = @_;
    return { keys => [ map { (jwk($_), jwk($_, '')) } @keys ] };
}

# Teleport v17 balanced-v1: the v16 shape with P-256 keys.
sub jwks_v17 {
    my (@keys) = @_;
    croak 'jwks_v17 expects P-256 keys' if grep { !is_ec($_) } @keys;
    return jwks_v16(@keys);
}

sub write_file {
    my ($path, $content, $mode) = @_;
    my $tmp = "$path.tmp.$$";
    open my $fh, '>:raw', $tmp or croak "cannot write $tmp: $!";
    print {$fh} $content or croak "cannot write $tmp: $!";
    close $fh or croak "cannot close $tmp: $!";
    chmod $mode // 0644, $tmp or croak "cannot chmod $tmp: $!";
    rename $tmp, $path or croak "cannot rename $tmp to $path: $!";
    return;
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<:raw', $path or croak "cannot read $path: $!";
    local $/;
    return scalar <$fh>;
}

# Write a JWKS document (hash or raw string) atomically, readable by all.
sub write_jwks {
    my ($path, $jwks) = @_;
    write_file($path, ref $jwks ? $json->encode($jwks) : $jwks, 0644);
    return;
}

# The claims of a Teleport application token for user alice, issued now and
# valid for 10 minutes.  Named arguments replace claims; an undef value
# removes the claim.
sub teleport_claims {
    my (%override) = @_;
    my $now = time;
    my %claims = (
        iss      => 'teleport.example.com',
        sub      => 'alice',
        username => 'alice',
        aud      => 'http://localhost:8080',
        roles    => [ 'access', 'editor' ],
        traits   => { logins => [ 'alice', 'root' ] },
        iat      => $now,
        nbf      => $now - 10,
        exp      => $now + 600,
    );
    while (my ($name, $value) = each %override) {
        if (defined $value) {
            $claims{$name} = $value;
        }
        else {
            delete $claims{$name};
        }
    }
    return \%claims;
}

# Mint a compact JWS with Crypt::JWT.  Arguments: key, alg (RS256 or ES256
# by key type), kid (omitted when undef; pass key_id($key) for a Teleport
# v15.4.20+ token), claims (hash reference or raw payload string).
sub mint {
    my (%args) = @_;
    my $key = $args{key} or croak 'mint: key missing';
    my $alg = $args{alg} // (is_ec($key) ? 'ES256' : 'RS256');
    my %header = (typ => 'JWT');
    $header{kid} = $args{kid} if defined $args{kid};
    return encode_jwt(
        payload       => $args{claims} // teleport_claims(),
        key           => $key,
        alg           => $alg,
        extra_headers => \%header,
    );
}

sub sign_bytes {
    my ($key, $alg, $input) = @_;
    return $key->sign_message_rfc7518($input, 'SHA256') if $alg eq 'ES256';
    return $key->sign_message($input, 'SHA256', 'v1.5') if $alg eq 'RS256';
    return $key->sign_message($input, 'SHA512', 'v1.5') if $alg eq 'RS512';
    croak "sign_bytes: unsupported alg $alg";
}

# Sign header and payload given as raw JSON text (which may be invalid or
# carry duplicate members), for cases Crypt::JWT cannot produce.
sub sign_raw {
    my (%args) = @_;
    my $input = b64url($args{header}) . '.' . b64url($args{payload});
    return "$input." . b64url(sign_bytes($args{key}, $args{alg}, $input));
}

sub split_token {
    my ($token) = @_;
    return split /\./, $token, -1;
}

sub decode_part {
    my ($part) = @_;
    return $json->decode(decode_base64url($part));
}

# Re-encode the payload after $edit changed the claims, keeping the original
# header and signature.
sub tamper_payload {
    my ($token, $edit) = @_;
    my ($header, $payload, $signature) = split_token($token);
    my $claims = decode_part($payload);
    $edit->($claims);
    return join '.', $header, b64url($json->encode($claims)), $signature;
}

# Header and payload of $token with the signature of $other.
sub swap_signature {
    my ($token, $other) = @_;
    my ($header, $payload) = split_token($token);
    my (undef, undef, $signature) = split_token($other);
    return "$header.$payload.$signature";
}

# An unsecured JWS (RFC 7515 appendix A.5): "alg": "none".  The signature
# segment is empty unless $signature is given.
sub alg_none {
    my ($claims, $signature) = @_;
    my $header = b64url($json->encode({ alg => 'none', typ => 'JWT' }));
    my $payload = b64url($json->encode($claims));
    return "$header.$payload." . ($signature // '');
}

# HS256 keyed with the PEM text of the RSA public key: the algorithm
# confusion attack against verifiers that pass the key to any algorithm.
sub hs256_with_public_pem {
    my ($rsa_key, $claims, $kid) = @_;
    my %header = (alg => 'HS256', typ => 'JWT');
    $header{kid} = $kid if defined $kid;
    my $input = b64url($json->encode(\%header)) . '.'
        . b64url($json->encode($claims));
    my $secret = $rsa_key->export_key_pem('public_x509');
    return "$input." . b64url(hmac_sha256($input, $secret));
}

# Replace the 64-byte R || S signature of an ES256 token with its DER
# (ASN.1 SEQUENCE of two INTEGERs) form, which JWS does not allow.
sub es256_signature_to_der {
    my ($token) = @_;
    my ($header, $payload, $signature) = split_token($token);
    my $raw = decode_base64url($signature);
    croak 'es256_signature_to_der: signature is not 64 bytes' if length $raw != 64;
    my $der = der_sequence(der_integer(substr $raw, 0, 32)
        . der_integer(substr $raw, 32, 32));
    return "$header.$payload." . b64url($der);
}

1;
