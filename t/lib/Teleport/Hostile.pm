package Teleport::Hostile;

# Hostile-input tests of mod_auth_teleport: the keys and token recipes that
# the rows of t/corpus/*.txt call, the reader of those files, and the
# functions that send one row to httpd and check the status and the log
# lines against it.
#
# A recipe is a Perl expression evaluated in this package, so it can call
# every function below.  t/corpus/README describes the file format.  Keys
# by name:
#   rsa, ec, other   the suite's rsa-main, ec-short and rsa-other keys
#   rsa-any          an RSA key whose JWK has no "alg", for RS384 to PS512
#   ec-other         a P-256 key in no JWKS
#   p384, p521       P-384 and P-521 keys (ES384, ES512)
#   ed25519          an Ed25519 key (EdDSA)
# The generated keys are kept in <state>/hostile-keys, so every .t file of
# one run signs with the same keys.

use strict;
use warnings;

use Apache::Test ();
use Carp qw(croak);
use Crypt::PK::ECC ();
use Crypt::PK::Ed25519 ();
use Crypt::PK::RSA ();
use Digest::SHA qw(sha256 hmac_sha256 hmac_sha384 hmac_sha512);
use Exporter qw(import);
use File::Path qw(make_path);
use IO::Select ();
use IO::Socket::IP ();
use JSON ();
use LWP::UserAgent ();
use Math::BigInt ();
use MIME::Base64 qw(encode_base64 decode_base64 encode_base64url decode_base64url);
use Test::More ();
use Time::HiRes ();

use Teleport::Test qw(
    state_dir test_key error_log_offset error_log_since rejection_lines
);
use Teleport::Token qw(
    key_id jwk write_file teleport_claims
    es256_signature_to_der
);

our @EXPORT_OK = qw(
    read_corpus hostile_key kid_of jwk_of write_scenario
    run_token_case run_jwks_case TOKEN_CASE_CHECKS JWKS_CASE_CHECKS
    count_crashes access_log_offset access_log_lines sent_values
);

# Assertions made by one run_token_case and one run_jwks_case call.
use constant TOKEN_CASE_CHECKS => 4;
use constant JWKS_CASE_CHECKS  => 5;

# Longest time one JWKS row may take.  Each fetch goes to a server on
# 127.0.0.1 that answers at once, and TeleportFetchTimeout is 5 s (2 s for
# the streamed body), so a row that takes longer waited for a timeout.
use constant JWKS_CASE_SECONDS => 3;

# Order of the P-256 group (SEC 2 section 2.4.2), big-endian.
my $P256_ORDER_HEX =
    'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551';

# Canonical JSON: bytes (utf8) for whole documents, characters (no utf8) for
# the pieces that raw_object() joins with text from a recipe.
my $json = JSON->new->utf8->canonical->allow_nonref;
my $json_chars = JSON->new->canonical->allow_nonref;

# ---- keys ------------------------------------------------------------------

my %SUITE_KEY = (rsa => 'rsa-main', ec => 'ec-short', other => 'rsa-other');

my %MAKE_KEY = (
    'rsa-any'  => sub { my $key = Crypt::PK::RSA->new; $key->generate_key(256, 65537); $key },
    'ec-other' => sub { generate_ec('secp256r1') },
    p384       => sub { generate_ec('secp384r1') },
    p521       => sub { generate_ec('secp521r1') },
    ed25519    => sub { Crypt::PK::Ed25519->new->generate_key },
);

my %DEFAULT_ALG = (
    rsa => 'RS256', other => 'RS256', 'rsa-any' => 'RS256',
    ec => 'ES256', 'ec-other' => 'ES256',
    p384 => 'ES384', p521 => 'ES512', ed25519 => 'EdDSA',
);

my %key_cache;

sub generate_ec {
    my ($curve) = @_;
    my $key = Crypt::PK::ECC->new;
    $key->generate_key($curve);
    return $key;
}

# Return the key object of a key name (see the file header).
sub hostile_key {
    my ($name) = @_;
    return $key_cache{$name} if $key_cache{$name};
    if ($SUITE_KEY{$name}) {
        return $key_cache{$name} = test_key($SUITE_KEY{$name});
    }
    my $make = $MAKE_KEY{$name} or croak "unknown key name '$name'";
    my $dir = state_dir() . '/hostile-keys';
    my $path = "$dir/$name.pem";
    make_path($dir, { mode => 0700 });
    my $class = $name eq 'ed25519' ? 'Crypt::PK::Ed25519'
              : $name eq 'rsa-any' ? 'Crypt::PK::RSA' : 'Crypt::PK::ECC';
    if (-f $path) {
        return $key_cache{$name} = $class->new($path);
    }
    my $key = $make->();
    write_file($path, $key->export_key_pem('private'), 0600);
    return $key_cache{$name} = $key;
}

# Teleport's key id for the suite's keys, base64url(SHA-256 of the public
# DER) for the others.
sub kid_of {
    my ($name) = @_;
    my $key = hostile_key($name);
    return key_id($key) if $SUITE_KEY{$name};
    return b64(sha256($key->export_key_der('public')));
}

# The JWK of a named key as a hash.  Named arguments replace members, and
# an undef value removes one.
sub jwk_of {
    my ($name, %override) = @_;
    my $key = hostile_key($name);
    my $entry;
    if ($SUITE_KEY{$name} || $name eq 'ec-other' || $name eq 'rsa-any') {
        $entry = jwk($key, kid_of($name));
        # Without "alg" the rsa-any key may verify every RSA algorithm.
        delete $entry->{alg} if $name eq 'rsa-any';
    }
    else {
        $entry = $key->export_key_jwk('public', 1);
        $entry->{kid} = kid_of($name);
        $entry->{use} = 'sig';
        $entry->{alg} = $DEFAULT_ALG{$name};
    }
    while (my ($member, $value) = each %override) {
        if (defined $value) {
            $entry->{$member} = $value;
        }
        else {
            delete $entry->{$member};
        }
    }
    return $entry;
}

sub public_pem       { return hostile_key($_[0])->export_key_pem('public_x509') }
sub public_pem_pkcs1 { return hostile_key($_[0])->export_key_pem('public') }
sub public_der       { return hostile_key($_[0])->export_key_der('public_x509') }
sub public_der_pkcs1 { return hostile_key($_[0])->export_key_der('public') }
sub jwk_text         { return $json->encode(jwk_of($_[0])) }

# The RSA modulus of a named key as big-endian bytes.
sub modulus {
    my ($name) = @_;
    my $hex = hostile_key($name)->key2hash->{N};
    $hex = "0$hex" if length($hex) % 2;
    return pack 'H*', $hex;
}

# ---- encoding --------------------------------------------------------------

sub b64 {
    my ($bytes) = @_;
    return encode_base64url($bytes);
}

sub unb64 {
    my ($text) = @_;
    return decode_base64url($text);
}

# Text from a recipe as bytes: UTF-8 when it holds a character above U+00FF,
# otherwise each character is one byte, so "\xff" stays an invalid UTF-8
# byte.
sub to_bytes {
    my ($text) = @_;
    return $text unless $text =~ /[^\x00-\xff]/;
    my $copy = $text;
    utf8::encode($copy);
    return $copy;
}

# '[' x depth, inner, ']' x depth.
sub nest {
    my ($depth, $inner) = @_;
    return ('[' x $depth) . ($inner // '') . (']' x $depth);
}

sub now { return time }

# ---- tokens ----------------------------------------------------------------

# Sign input with a key object (or, for HS*, a secret string).
sub sign_input {
    my ($key, $alg, $input) = @_;
    return hmac_sha256($input, $key) if $alg eq 'HS256';
    return hmac_sha384($input, $key) if $alg eq 'HS384';
    return hmac_sha512($input, $key) if $alg eq 'HS512';
    return $key->sign_message($input) if $alg eq 'EdDSA';
    my ($family, $bits) = $alg =~ /^(RS|PS|ES)(256|384|512)$/
        or croak "sign_input: unsupported alg $alg";
    my $hash = "SHA$bits";
    return $key->sign_message($input, $hash, 'v1.5') if $family eq 'RS';
    return $key->sign_message($input, $hash, 'pss', $bits / 8) if $family eq 'PS';
    return $key->sign_message_rfc7518($input, $hash);
}

# Only the claims that /hostile-small/ checks: aud, exp and the user.
sub minimal_claims {
    return { aud => 'http://localhost:8080', exp => time + 600,
             username => 'alice', @_ };
}

# A compact JWS.  Arguments (all optional):
#   key          key name (default rsa)
#   alg          header "alg" (default the key's algorithm)
#   kid          header "kid", left out when undef (default the key's kid)
#   header       hash of header members to set (undef removes one)
#   header_json  the header as raw JSON text instead
#   claims       hash of claims to set (undef removes) on teleport_claims()
#   payload      the claims as a hash, instead of teleport_claims()
#   payload_json the payload as raw JSON text instead
#   edit         code called with references to the header and payload
#                segments before signing
#   sign_key     key name that signs instead of key
#   sign_alg     algorithm that signs instead of alg
#   secret       HMAC secret for HS* algorithms
#   signature    raw signature bytes instead of signing
sub jws {
    my (%args) = @_;
    my $key_name = $args{key} // 'rsa';
    my $alg = $args{alg} // $DEFAULT_ALG{$key_name}
        // croak "no default alg for key $key_name";

    my $header_text = $args{header_json};
    if (!defined $header_text) {
        my %header = (alg => $alg, typ => 'JWT');
        $header{kid} = exists $args{kid} ? $args{kid} : kid_of($key_name);
        delete $header{kid} unless defined $header{kid};
        set_members(\%header, $args{header});
        $header_text = $json->encode(\%header);
    }
    my $payload_text = $args{payload_json};
    if (!defined $payload_text) {
        my $claims = $args{payload} // teleport_claims(%{ $args{claims} || {} });
        $payload_text = $json->encode($claims);
    }

    my $header = b64(to_bytes($header_text));
    my $payload = b64(to_bytes($payload_text));
    $args{edit}->(\$header, \$payload) if $args{edit};
    my $input = "$header.$payload";

    my $signature = $args{signature};
    if (!defined $signature) {
        my $sign_alg = $args{sign_alg} // $alg;
        my $signer = $sign_alg =~ /^HS/ ? $args{secret} // croak 'jws: HS* needs secret'
                   : hostile_key($args{sign_key} // $key_name);
        $signature = sign_input($signer, $sign_alg, $input);
    }
    return "$input." . b64($signature);
}

sub set_members {
    my ($object, $members) = @_;
    for my $name (keys %{ $members || {} }) {
        if (defined $members->{$name}) {
            $object->{$name} = $members->{$name};
        }
        else {
            delete $object->{$name};
        }
    }
    return;
}

# Valid RS256 and ES256 tokens of the suite's keys with claim overrides.
sub rs256 { return jws(claims => {@_}) }
sub es256 { return jws(key => 'ec', claims => {@_}) }

# A token whose header is {"alg": <alg>, "typ": "JWT"} (plus header), with
# the given signature segment text (default empty).
sub unsecured {
    my (%args) = @_;
    my %header = (alg => $args{alg}, typ => 'JWT');
    $header{kid} = $args{kid} if defined $args{kid};
    set_members(\%header, $args{header});
    return b64($json->encode(\%header)) . '.'
        . b64($json->encode(teleport_claims())) . '.'
        . ($args{signature_text} // '');
}

# JSON object text from defaults (a hash) and name => raw JSON text pairs.
# A pair replaces the default member (undef removes it), and a name written
# "+name" adds a second member of that name.
sub raw_object {
    my ($defaults, @pairs) = @_;
    my (%replace, @extra);
    while (@pairs) {
        my ($name, $text) = splice @pairs, 0, 2;
        if ($name =~ s/^\+//) {
            push @extra, [ $name, $text ];
        }
        else {
            $replace{$name} = $text;
        }
    }
    my @members;
    for my $name (sort keys %$defaults) {
        next if exists $replace{$name};
        push @members, [ $name, $json_chars->encode($defaults->{$name}) ];
    }
    for my $name (sort keys %replace) {
        push @members, [ $name, $replace{$name} ] if defined $replace{$name};
    }
    push @members, @extra;
    return '{' . join(',', map { $json_chars->encode($_->[0]) . ':' . $_->[1] } @members) . '}';
}

# Header JSON text of an RS256 token of the rsa key, with raw members.
sub raw_header {
    return raw_object({ alg => 'RS256', kid => kid_of('rsa'), typ => 'JWT' }, @_);
}

# Payload JSON text of teleport_claims(), with raw members.
sub raw_claims {
    return raw_object(teleport_claims(), @_);
}

sub segments { return split /\./, $_[0], -1 }

sub signature_of {
    my ($token) = @_;
    return unb64((segments($token))[2]);
}

sub with_signature {
    my ($token, $bytes) = @_;
    my @parts = segments($token);
    return "$parts[0].$parts[1]." . b64($bytes);
}

sub with_segment {
    my ($token, $index, $text) = @_;
    my @parts = segments($token);
    $parts[$index] = $text;
    return join '.', @parts;
}

sub p256_order { return pack 'H*', $P256_ORDER_HEX }

# 32-byte big-endian form of a Math::BigInt below 2^256.
sub int32 {
    my ($number) = @_;
    my $hex = substr $number->as_hex, 2;
    croak "int32: $number does not fit 32 bytes" if length $hex > 64;
    return pack 'H*', ('0' x (64 - length $hex)) . $hex;
}

sub big { return Math::BigInt->from_hex(unpack 'H*', $_[0]) }

# An ES256 token whose R and S are replaced: each argument is 32 bytes, or
# a code reference that receives the valid value and returns the new one.
sub es256_rs {
    my (%args) = @_;
    my $token = es256();
    my $signature = signature_of($token);
    my ($r, $s) = (substr($signature, 0, 32), substr($signature, 32, 32));
    for ([ \$r, $args{r} ], [ \$s, $args{s} ]) {
        my ($value, $new) = @$_;
        next unless defined $new;
        $$value = ref $new ? $new->($$value) : $new;
    }
    return with_signature($token, $r . $s);
}

# The ECDSA twin of a valid signature: S replaced by n - S, which verifies
# too, because ECDSA signatures are malleable and JWS does not require a
# low S.
sub es256_high_s {
    return es256_rs(s => sub { int32(big(p256_order()) - big($_[0])) });
}

# A valid ES256 token whose R (or S) starts with a zero byte, which a
# verifier must keep when it converts R || S to DER.  One signature in 256
# qualifies, and the loop gives up after 5000.
sub es256_leading_zero {
    my ($which) = @_;
    my $offset = $which eq 'r' ? 0 : 32;
    for (1 .. 5000) {
        my $token = es256();
        return $token if substr(signature_of($token), $offset, 1) eq "\0";
    }
    croak "es256_leading_zero: no signature with a zero first byte of $which in 5000";
}

# The signature of token cut or extended to length bytes (zero bytes are
# appended).
sub resized_signature {
    my ($token, $length) = @_;
    my $signature = signature_of($token);
    $signature = length $signature >= $length ? substr($signature, 0, $length)
               : $signature . ("\0" x ($length - length $signature));
    return with_signature($token, $signature);
}

sub der_signature { return es256_signature_to_der($_[0]) }

# A valid RS256 token written with the standard base64 alphabet ('+' and
# '/'), re-signed with other jti values until one of those characters
# appears.
sub standard_alphabet {
    for my $attempt (1 .. 200) {
        my $token = rs256(jti => "standard-$attempt");
        (my $standard = $token) =~ tr{-_}{+/};
        return $standard if $standard ne $token;
    }
    croak 'standard_alphabet: no token with - or _ in 200 attempts';
}

# A valid RS256 token whose header (index 0) or payload (index 1) segment
# has a length that leaves bits over (2 or 3 mod 4), sized with a "pad"
# member.
sub with_bits_over {
    my ($index) = @_;
    for my $pad ('', 'x', 'xx') {
        my $token = jws($index == 0 ? (header => { pad => $pad }) : (claims => { pad => $pad }));
        return $token if length((segments($token))[$index]) % 4 >= 2;
    }
    croak "with_bits_over: no length leaving bits for segment $index";
}

# Append the '=' padding of standard base64 to segment index of token.
sub padded {
    my ($token, $index) = @_;
    my @parts = segments($token);
    $parts[$index] .= '=' x ((4 - length($parts[$index]) % 4) % 4);
    croak "padded: segment $index needs no padding" unless $parts[$index] =~ /=$/;
    return join '.', @parts;
}

# Set the unused low bits of the last character of a base64url text whose
# length leaves bits over (RFC 4648 section 3.5), keeping the decoded bytes.
sub noncanonical_text {
    my ($text) = @_;
    my $alphabet = join '', 'A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_';
    my $rest = length($text) % 4;
    croak "noncanonical_text: length $rest mod 4 leaves no bits" unless $rest == 2 || $rest == 3;
    my $value = index $alphabet, substr($text, -1);
    return substr($text, 0, -1) . substr($alphabet, $value | 1, 1);
}

# A valid RS256 token whose header or payload segment (by index) is
# re-encoded with non-zero trailing bits, then signed as sent.
sub noncanonical_segment {
    my ($index) = @_;
    for my $pad ('', 'x', 'xx') {
        my %args = $index == 0 ? (header => { pad => $pad }) : (claims => { pad => $pad });
        my $token = jws(%args);
        next unless length((segments($token))[$index]) % 4 >= 2;
        return jws(%args, edit => sub {
            my $segment = $_[$index];
            $$segment = noncanonical_text($$segment);
        });
    }
    croak "noncanonical_segment: no length leaving bits for segment $index";
}

# A valid token of exactly length bytes: jws(%args) with a claim "pad" (and
# a header member "pad" when needed) sized to fit.
sub sized {
    my ($length, %args) = @_;
    my $claims = $args{payload} // teleport_claims(%{ delete $args{claims} || {} });
    for my $header_pad ('', 'x', 'xx', 'xxx') {
        my %header = (%{ $args{header} || {} });
        $header{pad} = $header_pad if $header_pad ne '';
        my $base = length jws(%args, header => \%header,
                              payload => { %$claims, pad => '' });
        my $guess = int(($length - $base) * 3 / 4);
        for my $pad_length ($guess - 3 .. $guess + 3) {
            next if $pad_length < 0;
            my $token = jws(%args, header => \%header,
                            payload => { %$claims, pad => 'p' x $pad_length });
            return $token if length $token == $length;
        }
    }
    croak "sized: cannot build a token of exactly $length bytes";
}

# Send these headers (name => value pairs) instead of the location's token
# header.  An array reference as value sends the header once per element.
sub headers { return { headers => [@_] } }

# Send value in the location's token header through a raw socket, so that
# it may contain bytes an HTTP client library refuses (CR, LF, NUL).
sub raw_value { return { raw_value => $_[0] } }

# Send this text as header line(s) through a raw socket, "\r\n" added.
sub raw_lines { return { raw_lines => $_[0] } }

# Send value to the location where first, then final to the row's location,
# on one keep-alive connection: the child process that verified the first
# token (and may remember it in its token cache) receives the second.
sub after_request {
    my ($where, $value, $final) = @_;
    return { first => [ $where, $value ], value => $final };
}

# ---- JWKS documents --------------------------------------------------------

# A JWKS document {"keys": [entries]}, where an entry is a hash (see
# jwk_of) or raw JSON text.
sub jwks {
    my (@entries) = @_;
    return '{"keys":[' . join(',', map { ref $_ ? $json->encode($_) : $_ } @entries) . ']}';
}

# JWK text of a named key with raw JSON members (see raw_object).
sub jwk_raw {
    my ($name, @pairs) = @_;
    return raw_object(jwk_of($name), @pairs);
}

# URL of the JWKS scenario hostile-jku, which serves the other key and must
# never be requested: header members and JWK members that name a URL are
# never followed.
sub jku_url {
    return "https://127.0.0.1:$ENV{TELEPORT_TEST_JWKS_PORT}/hostile-jku/.well-known/jwks.json";
}

# A body of bytes bytes written to a file in the scenario directory
# (Content-Length set by the JWKS server).
sub big_body { return { big_body => $_[0] } }

# A body of bytes bytes streamed by a CGI of this httpd without
# Content-Length (chunked), for /hostile-jwks-stream/ of
# extra_hostile.conf.in.
sub streamed_body { return { streamed_body => $_[0] } }

# The JWK of a named key with a 1 to 8200-bit random odd modulus instead of
# its own (top bit set, so the modulus has exactly that many bits).
sub rsa_modulus_bits {
    my ($bits, %override) = @_;
    my $bytes = int(($bits + 7) / 8);
    my $modulus = join '', map { chr int rand 256 } 1 .. $bytes;
    my $top = ($bits - 1) % 8;
    substr($modulus, 0, 1) = chr((ord(substr $modulus, 0, 1) & ((2 << $top) - 1)) | (1 << $top));
    substr($modulus, -1, 1) = chr(ord(substr $modulus, -1, 1) | 1);
    return jwk_of('rsa', n => b64($modulus), kid => "modulus-$bits-bits", %override);
}

# P-256 coordinates of the ec key, as 32-byte strings.
sub ec_point {
    my $hash = hostile_key('ec')->key2hash;
    return map { pack 'H*', ('0' x (64 - length $_)) . $_ } @{$hash}{qw(pub_x pub_y)};
}

# A JWKS body of exactly length bytes: a valid document of the rsa key
# followed by spaces.
sub jwks_of_length {
    my ($length) = @_;
    my $document = jwks(jwk_of('rsa'));
    croak "jwks_of_length: $length is shorter than the document" if $length < length $document;
    return $document . (' ' x ($length - length $document));
}

# ---- corpus files ----------------------------------------------------------

# Read a corpus file: rows of fields separated by " | ", the last field
# taking the rest of the line.  '#' starts a comment line.  Returns hashes
# with the field names given, plus "line" and "file".
sub read_corpus {
    my ($path, @fields) = @_;
    open my $fh, '<:raw', $path or croak "cannot read $path: $!";
    my (@rows, %seen);
    while (my $line = <$fh>) {
        chomp $line;
        next if $line =~ /^\s*(?:#|$)/;
        my @values = map { s/^\s+|\s+$//gr } split /\s\|\s/, $line, scalar @fields;
        croak "$path line $.: expected " . scalar(@fields) . " fields" if @values != @fields;
        my %row = (line => $., file => $path);
        @row{@fields} = @values;
        croak "$path line $.: duplicate name $row{name}" if $seen{ $row{name} }++;
        push @rows, \%row;
    }
    close $fh;
    return @rows;
}

# Parse "<status> [<reason> | -] [todo | todo-detail]".
sub parse_expect {
    my ($row) = @_;
    my ($status, @words) = split ' ', $row->{expect};
    croak "$row->{file} line $row->{line}: bad status '$status'" unless $status =~ /^\d{3}$/;
    my %expect = (status => $status, reason => '-', todo => '');
    for my $word (@words) {
        if ($word =~ /^todo(?:-detail)?$/) {
            $expect{todo} = $word;
        }
        else {
            $expect{reason} = $word;
        }
    }
    return \%expect;
}

# Evaluate a recipe in this package.  Errors name the corpus file and line.
sub evaluate {
    my ($row, $field) = @_;
    my $code = $row->{$field};
    my $value = eval "package Teleport::Hostile;\n#line $row->{line} \"$row->{file}\"\n$code";
    croak "recipe of $row->{name} failed: $@" if $@;
    croak "recipe of $row->{name} returned nothing" unless defined $value;
    return $value;
}

# ---- sending ---------------------------------------------------------------

# Where a row sends its request: path, token header, and the Apache::Test
# vhost whose port to use (main server when absent).
my %WHERE = (
    main    => { path => '/hostile/env' },
    allalg  => { path => '/hostile-allalg/env' },
    open    => { path => '/hostile-open/env' },
    small   => { path => '/hostile-small/env' },
    sub     => { path => '/hostile-sub/env', user_claim => 'sub' },
    bearer  => { path => '/hostile-bearer/env', header => 'Authorization' },
    big     => { path => '/hostile-big/env', vhost => 'hostile_big' },
    logs    => { path => '/hostile-logs/env' },
    'logs-bearer' => { path => '/hostile-logs-bearer/env', header => 'Authorization' },
    'logs-nokeys' => { path => '/hostile-logs-nokeys/env' },
    'logs-big'    => { path => '/hostile-logs/env', vhost => 'hostile_big' },
);

sub where_target {
    my ($where) = @_;
    if ($where =~ m{^jwks:([a-z0-9-]+)$}) {
        return { path => "/hostile-jwks-$1/env" };
    }
    return $WHERE{$where} // croak "unknown location '$where'";
}

sub where_port {
    my ($target) = @_;
    my $name = $target->{vhost} // 'port';
    my $port = Apache::Test::vars($target->{vhost} ? "${name}_port" : 'port');
    croak "no port for $name" unless $port;
    return $port;
}

my $user_agent;

# Remember a value sent in a token header, in <state>/hostile-sent (base64,
# one a line) for zz_hostile_logs.t.  Values of the shape that
# zz_token_not_logged.t expects go to <state>/sent-tokens too.
sub record_sent {
    my (@values) = @_;
    my $state = state_dir();
    open my $all, '>>:raw', "$state/hostile-sent" or croak "hostile-sent: $!";
    open my $shaped, '>>:raw', "$state/sent-tokens" or croak "sent-tokens: $!";
    for my $value (@values) {
        print {$all} encode_base64($value, ''), "\n";
        my $token = $value =~ s/^\s*Bearer\s+//ir;
        print {$shaped} "$token\n" if $token =~ /^[\w-]+\.[\w-]+\.[\w-]{16,}$/;
    }
    close $all;
    close $shaped;
    return;
}

# Values recorded by record_sent, in order.
sub sent_values {
    open my $fh, '<:raw', state_dir() . '/hostile-sent' or return ();
    my @values = map { decode_base64($_) } grep { /\S/ } <$fh>;
    close $fh;
    return @values;
}

# Send the value a recipe returned to a location.  Returns a hash: status,
# challenge (WWW-Authenticate), retry_after, body.
sub send_value {
    my ($where, $value) = @_;
    my $target = where_target($where);
    my $port = where_port($target);

    if (ref $value eq 'HASH' && defined($value->{raw_value} // $value->{raw_lines})) {
        my $header = $target->{header} // 'Teleport-Jwt-Assertion';
        my $lines = $value->{raw_lines} // "$header: $value->{raw_value}";
        record_sent(defined $value->{raw_value} ? $value->{raw_value} : $value->{raw_lines});
        return send_raw($port, $target->{path}, $lines);
    }
    if (ref $value eq 'HASH' && $value->{first}) {
        # One keep-alive connection, so one child process (and its token
        # cache) serves both requests.
        my $agent = LWP::UserAgent->new(timeout => 20, keep_alive => 1);
        my ($first_where, $first_value) = @{ $value->{first} };
        my $first_target = where_target($first_where);
        croak "first request must go to the same port" if where_port($first_target) != $port;
        my $first = send_lwp($agent, $first_target, $port, $first_value);
        Test::More::note("first request to $first_where: $first->{status}");
        return send_lwp($agent, $target, $port, $value->{value});
    }
    $user_agent //= LWP::UserAgent->new(timeout => 20, keep_alive => 0);
    return send_lwp($user_agent, $target, $port, $value);
}

sub send_lwp {
    my ($agent, $target, $port, $value) = @_;
    my $header = $target->{header} // 'Teleport-Jwt-Assertion';
    my @headers = ref $value eq 'HASH' ? @{ $value->{headers} } : ($header => to_bytes($value));
    my @sent;
    for (my $i = 1; $i < @headers; $i += 2) {
        push @sent, ref $headers[$i] ? @{ $headers[$i] } : $headers[$i];
    }
    record_sent(@sent);
    my $response = $agent->get("http://127.0.0.1:$port$target->{path}", @headers);
    return {
        status      => $response->code,
        challenge   => scalar $response->header('WWW-Authenticate'),
        retry_after => scalar $response->header('Retry-After'),
        body        => $response->content // '',
    };
}

# Send an HTTP/1.0 request with extra header lines over a plain socket and
# read the whole response (at most 20 s).
sub send_raw {
    my ($port, $path, $lines) = @_;
    my $socket = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                                     Timeout => 10)
        or croak "cannot connect to 127.0.0.1:$port: $@";
    binmode $socket;
    print {$socket} "GET $path HTTP/1.0\r\nHost: 127.0.0.1:$port\r\n$lines\r\n\r\n";
    my $response = '';
    my $select = IO::Select->new($socket);
    my $deadline = Time::HiRes::time() + 20;
    while (Time::HiRes::time() < $deadline && $select->can_read(1)) {
        my $read = sysread $socket, $response, 65536, length $response;
        last unless $read;
    }
    close $socket;
    my ($head, $body) = split /\r\n\r\n/, $response, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    my ($challenge) = ($head // '') =~ /^WWW-Authenticate: ([^\r\n]*)/mi;
    my ($retry_after) = ($head // '') =~ /^Retry-After: ([^\r\n]*)/mi;
    return { status => $status // 0, challenge => $challenge,
             retry_after => $retry_after, body => $body // '' };
}

sub response_user {
    my ($response) = @_;
    my $env = eval { $json->decode($response->{body}) };
    return ref $env eq 'HASH' ? $env->{REMOTE_USER} : undef;
}

# The user claim (default "username") of a token, or undef when it does not
# decode.
sub token_user {
    my ($value, $claim) = @_;
    $claim //= 'username';
    $value = $value->{value} if ref $value eq 'HASH' && $value->{first};
    return undef if ref $value;
    my $token = $value =~ s/^\s*Bearer\s+//ir =~ s/^\s+|\s+$//gr;
    my $claims = eval { $json->decode(unb64((segments($token))[1] // '')) };
    return ref $claims eq 'HASH' && !ref $claims->{$claim} ? $claims->{$claim} : undef;
}

# ---- checks ----------------------------------------------------------------

# Lines of this module at level error or above.
sub module_errors {
    return grep { /\[auth_teleport:(?:error|crit|alert|emerg)\]/ } @_;
}

sub explain {
    my ($name, $response, @log) = @_;
    Test::More::diag("$name: status $response->{status}, WWW-Authenticate "
        . ($response->{challenge} // '(none)'));
    Test::More::diag("$name: error_log: " . substr($_, 0, 400)) for @log;
    Test::More::diag("$name: (no error_log lines)") unless @log;
    return;
}

sub start_todo {
    my ($expect, $scope) = @_;
    my $todo = $expect->{todo} eq 'todo'
        || ($expect->{todo} eq 'todo-detail' && $scope eq 'detail');
    Test::More->builder->todo_start('the module does not do what its '
        . 'documentation states; see the comment above the corpus row') if $todo;
    return $todo;
}

sub end_todo {
    my ($todo) = @_;
    Test::More->builder->todo_end if $todo;
    return;
}

# Check the outcome of one request against expect.  Makes
# TOKEN_CASE_CHECKS assertions and returns 1 when all passed.
sub check_outcome {
    my ($name, $expect, $response, $user, @log) = @_;
    my @rejections = rejection_lines(@log);
    my ($reason) = map { /token rejected: reason=(\S+)/ } @rejections;
    my $want_line = $expect->{status} == 401 && $expect->{reason} ne '-';
    Test::More::note("$name: got $response->{status} " . ($reason // '(no rejection)')
        . "; expected $expect->{status} $expect->{reason}");

    my $ok = 1;
    my $todo = start_todo($expect, 'all');
    $ok &= Test::More::is($response->{status}, $expect->{status}, "$name: status");
    $ok &= Test::More::is(scalar @rejections, $want_line ? 1 : 0, "$name: rejection lines");
    end_todo($todo);

    $todo = start_todo($expect, 'detail');
    if ($want_line) {
        $ok &= Test::More::like($rejections[0] // '',
            qr/\[auth_teleport:info\] .*token rejected: reason=\Q$expect->{reason}\E /,
            "$name: reason $expect->{reason} at info");
    }
    elsif ($expect->{status} == 200) {
        my $got = response_user($response);
        $ok &= defined $user ? Test::More::is($got, $user, "$name: REMOTE_USER")
                             : Test::More::ok(defined $got && length $got, "$name: REMOTE_USER set");
    }
    elsif ($expect->{status} == 401) {
        $ok &= Test::More::like($response->{challenge} // '', qr/^(?:Teleport|Bearer) realm=/,
            "$name: challenge without a logged rejection");
    }
    elsif ($expect->{status} == 503) {
        $ok &= Test::More::like($response->{retry_after} // '', qr/^\d+$/, "$name: Retry-After");
    }
    else {
        $ok &= Test::More::is(scalar(grep { /\[auth_teleport:/ } @log), 0,
            "$name: module logged nothing");
    }
    end_todo($todo);

    # Not a TODO test even for a todo row, because no documented outcome
    # logs an error except a 503, which logs the line naming the key source.
    if ($expect->{status} == 503) {
        $ok &= Test::More::is(scalar(grep { /TLP031: no usable keys from / } @log), 1,
            "$name: one no-usable-keys line");
    }
    else {
        my @errors = module_errors(@log);
        $ok &= Test::More::is(scalar @errors, 0, "$name: no module error logged");
    }
    return $ok;
}

# Run one row of a token corpus (name | where | expect | recipe), making
# TOKEN_CASE_CHECKS assertions.  Returns a hash: ok, the value sent and the
# error_log lines the request added.
sub run_token_case {
    my ($row) = @_;
    my $expect = parse_expect($row);
    my $value = evaluate($row, 'recipe');
    my $offset = error_log_offset();
    my $response = send_value($row->{where}, $value);
    my @log = error_log_since($offset);
    my $user = $expect->{status} == 200
             ? token_user($value, where_target($row->{where})->{user_claim}) : undef;
    my $ok = check_outcome($row->{name}, $expect, $response, $user, @log);
    explain($row->{name}, $response, @log) unless $ok || $expect->{todo};
    return { ok => $ok, value => $value, log => \@log };
}

# Create (or replace) the JWKS scenario directory hostile-jwks-<scenario>
# for a JWKS recipe value.  Returns a cleanup code reference.
sub write_scenario {
    my ($scenario, $value) = @_;
    my $dir = state_dir() . "/jwks/$scenario";
    make_path($dir, { mode => 0755 });
    if (!ref $value) {
        write_file("$dir/jwks.json", to_bytes($value), 0644);
        return sub { };
    }
    if (defined $value->{big_body}) {
        write_big_body("$dir/body", $value->{big_body});
        return sub { unlink "$dir/body" };
    }
    if (defined $value->{streamed_body}) {
        write_stream_cgi($value->{streamed_body});
        return sub { };
    }
    croak "write_scenario: unknown JWKS recipe value";
}

# A JWKS-like body that never ends before size bytes: {"keys":[ followed
# by RSA entries, written in 1 MB pieces.
sub write_big_body {
    my ($path, $size) = @_;
    my $entry = '{"kty":"RSA","n":"AQAB","e":"AQAB"},';
    my $piece = $entry x int(1_048_576 / length $entry);
    open my $fh, '>:raw', $path or croak "cannot write $path: $!";
    print {$fh} '{"keys":[';
    my $written = 9;
    while ($written + length $piece < $size) {
        print {$fh} $piece or croak "cannot write $path: $!";
        $written += length $piece;
    }
    print {$fh} (' ' x ($size - $written - 2)), ']}';
    close $fh or croak "cannot write $path: $!";
    chmod 0644, $path;
    return;
}

# The CGI behind /hostile-stream/.well-known/jwks.json: a body of size
# bytes in 64 KB pieces, without Content-Length.  It stops when the reader
# goes away and after 20 s at most.
sub write_stream_cgi {
    my ($size) = @_;
    my $dir = state_dir() . '/hostile-cgi';
    make_path($dir, { mode => 0755 });
    write_file("$dir/stream.pl", <<"CGI", 0755);
#!/usr/bin/perl
use strict;
use warnings;
\$| = 1;
\$SIG{PIPE} = sub { exit 0 };
alarm 20;
my \$entry = '{"kty":"RSA","n":"AQAB","e":"AQAB"},';
my \$piece = \$entry x int(65536 / length \$entry);
print "Content-Type: application/json\\r\\n\\r\\n", '{"keys":[';
my \$sent = 9;
while (\$sent < $size) {
    print \$piece or exit 0;
    \$sent += length \$piece;
}
print "]}";
CGI
    return;
}

sub scenario_of {
    my ($row) = @_;
    my ($scenario) = $row->{name} =~ m{^([a-z0-9-]+)(?:/|$)}
        or croak "$row->{file} line $row->{line}: bad JWKS case name '$row->{name}'";
    return $scenario;
}

my %prepared;

# Run one row of t/corpus/jwks.txt, making JWKS_CASE_CHECKS assertions.
sub run_jwks_case {
    my ($row) = @_;
    my $scenario = scenario_of($row);
    my $expect = parse_expect($row);
    my $cleanup = sub { };
    if ($row->{jwks} ne 'same') {
        croak "$row->{name}: scenario $scenario prepared twice" if $prepared{$scenario}++;
        $cleanup = write_scenario("hostile-jwks-$scenario", evaluate($row, 'jwks'));
    }
    elsif (!$prepared{$scenario}) {
        croak "$row->{name}: 'same' before the scenario's first row";
    }

    my $token = evaluate($row, 'token');
    my $offset = error_log_offset();
    my $started = Time::HiRes::time();
    my $response = send_value("jwks:$scenario", $token);
    my $elapsed = Time::HiRes::time() - $started;
    my @log = error_log_since($offset);
    $cleanup->();
    my $name = $row->{name};
    Test::More::note(sprintf '%s: %.2f s', $name, $elapsed);

    my $ok = 1;
    if ($expect->{status} == 503) {
        my @fetch = grep { /TLP010: JWKS fetch from \S+ failed: / } @log;
        $ok &= Test::More::is($response->{status}, 503, "$name: status");
        $ok &= Test::More::like($response->{retry_after} // '', qr/^\d+$/, "$name: Retry-After");
        $ok &= Test::More::is(scalar rejection_lines(@log), 0, "$name: no rejection line");
        my $todo = start_todo($expect, 'detail');
        $ok &= Test::More::ok((grep { index($_, $row->{detail}) >= 0 } @fetch) == 1,
            "$name: one fetch error line with '$row->{detail}'");
        end_todo($todo);
        $ok &= Test::More::cmp_ok($elapsed, '<', JWKS_CASE_SECONDS,
            "$name: answered within " . JWKS_CASE_SECONDS . ' s');
    }
    else {
        my $user = $expect->{status} == 200 ? token_user($token) : undef;
        $ok &= check_outcome($name, $expect, $response, $user, @log) ? 1 : 0;
        my @warnings = grep { /TLP016: / } @log;
        if ($row->{detail} eq '-') {
            $ok &= Test::More::is(scalar @warnings, 0, "$name: no skipped-entry warning");
        }
        else {
            $ok &= Test::More::ok((grep { index($_, $row->{detail}) >= 0 } @warnings) == 1,
                "$name: skipped-entry warning with '$row->{detail}'");
        }
    }
    explain($name, $response, @log) unless $ok || $expect->{todo};
    return $ok;
}

# Lines of the error_log since offset that report a child process killed
# by a signal (a crash of the module shows up this way).
sub count_crashes {
    my ($offset) = @_;
    return scalar grep { /exit signal|AH00052|AH00060/ } error_log_since($offset);
}

sub access_log_path {
    return Apache::Test::vars('t_logs') . '/access_log';
}

sub access_log_offset {
    return -s access_log_path() // 0;
}

# Lines of the access_log from byte offset on (all lines without offset).
sub access_log_lines {
    my ($offset) = @_;
    my $path = access_log_path();
    open my $fh, '<', $path or croak "cannot read $path: $!";
    seek $fh, $offset // 0, 0;
    my @lines = <$fh>;
    close $fh;
    chomp @lines;
    return @lines;
}

1;
