import { ApiProperty } from '@nestjs/swagger';

/** OpenAPI shapes of the asset API (the services build plain objects of these shapes). */
export class AssetResponseDto {
  @ApiProperty({ example: 'products/shoe.jpg' })
  key!: string;

  @ApiProperty({ example: 48213 })
  size!: number;

  @ApiProperty({ example: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08' })
  sha256!: string;

  @ApiProperty({ example: 'image/jpeg' })
  contentType!: string;

  @ApiProperty({ example: '"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"' })
  etag!: string;

  @ApiProperty({ example: 'https://cdn.shop.example/products/shoe.jpg' })
  url!: string;

  @ApiProperty({ example: 'https://cdn.shop.example/_v/9f86d0.../products/shoe.jpg', description: 'Content-addressed; cache for a year' })
  versionedUrl!: string;
}

export class ImageInfoDto {
  @ApiProperty({ example: 4000, description: 'Intrinsic width in pixels (after EXIF orientation)' })
  width!: number;

  @ApiProperty({ example: 3000 })
  height!: number;

  @ApiProperty({ example: 'https://cdn.shop.example/products/shoe.jpg?w=640 640w, https://cdn.shop.example/products/shoe.jpg?w=1080 1080w', description: 'For <img srcset>; widths above the image\'s own are left out' })
  srcset!: string;

  @ApiProperty({ type: [Number], example: [640, 1080] })
  widths!: number[];
}

export class AssetDetailsDto extends AssetResponseDto {
  @ApiProperty({ type: String, nullable: true, description: "The asset's own Cache-Control (null: the per-type default)" })
  cacheControl!: string | null;

  @ApiProperty({ example: 'public, max-age=86400' })
  effectiveCacheControl!: string;

  @ApiProperty({ type: [String], example: ['product-42', 'shoes'] })
  tags!: string[];

  @ApiProperty({ format: 'date-time' })
  createdAt!: string;

  @ApiProperty({ format: 'date-time' })
  updatedAt!: string;

  @ApiProperty({ type: ImageInfoDto, required: false, description: 'Present for images the CDN makes variants of (docs/images.md)' })
  image?: ImageInfoDto;
}

export class AssetListDto {
  @ApiProperty({ type: [AssetDetailsDto] })
  items!: AssetDetailsDto[];

  @ApiProperty({ type: String, nullable: true, description: 'Pass as cursor for the next page' })
  nextCursor!: string | null;
}
